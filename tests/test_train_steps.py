"""Training steps of both stages really learn: on a fixed tiny set of rendered stems, the loss falls."""

import numpy as np
import pytest
import torch

from mixscribe.config import ModelConfig
from mixscribe.model.network import TwoBranchModel
from mixscribe.schema import HOP, SAMPLE_RATE, Clip, Note, Stem
from mixscribe.train.data import RemixConfig, Remixer
from mixscribe.train.steps import collate, set_stage, train_step


@pytest.fixture(scope="module")
def clips():
    """Three real stems (TimGM6mb piano, flute, bassoon), rendered by the synth stage's renderer."""
    from mixscribe.config import GeneratorConfig, RenderConfig
    from mixscribe.synth import catalog
    from mixscribe.synth.generator import generate_performance
    from mixscribe.synth.render import FluidSynthRenderer, Instrument

    gen = GeneratorConfig(clip_frames=128)
    r = FluidSynthRenderer(RenderConfig(), catalog.select(("timgm6mb",)))
    out = []
    for i, (prog, lo, hi, fam) in enumerate([(0, 48, 72, "piano"), (73, 60, 84, "pipe"), (70, 36, 55, "reed")]):
        perf = generate_performance(gen, lo, hi, np.random.default_rng(i))
        audio = r.render(Instrument("timgm6mb", 0, prog), perf, 128 * HOP).audio
        stem = Stem((audio * 32767).astype(np.int16), "timgm6mb", "tim", 0, prog, "x", prog, fam, 1.0)
        notes = [Note(n.onset * HOP / SAMPLE_RATE, n.offset * HOP / SAMPLE_RATE, n.pitch, n.velocity, 0) for n in perf.notes]
        out.append(Clip(f"c{i}", i, "train", SAMPLE_RATE, 128 * HOP, [stem], notes))
    return out


def batch_of(clips, k_weights):
    remixer = Remixer(clips, RemixConfig(crop_frames=96, k_weights=k_weights), seed=0)
    return collate([remixer.example(0, i) for i in range(4)])


def test_amt_stage_lowers_focal_loss_and_clamps_affines(clips):
    torch.manual_seed(0)
    model = TwoBranchModel(ModelConfig())
    params = set_stage(model, "amt")
    assert all(not p.requires_grad for p in model.encoder.parameters())
    opt = torch.optim.AdamW(params, lr=3e-3)
    batch = batch_of(clips, (0.5, 0.5))
    first = train_step(model, batch, opt, "amt")["loss"]
    for _ in range(25):
        last = train_step(model, batch, opt, "amt")["loss"]
    assert last < 0.6 * first
    assert 0.005 <= model.amt.affine.k.item() <= 3.0


def test_encoder_stage_lowers_infonce_with_the_amt_branch_frozen(clips):
    torch.manual_seed(0)
    model = TwoBranchModel(ModelConfig())
    amt_before = {k: v.clone() for k, v in model.amt.state_dict().items()}
    params = set_stage(model, "encoder")
    assert not model.amt.training and model.encoder.training
    opt = torch.optim.AdamW(params, lr=3e-3)
    batch = batch_of(clips, (0.0, 0.5, 0.5))  # two or three timbres per mixture
    first = train_step(model, batch, opt, "encoder")["timbre"]
    for _ in range(25):
        last = train_step(model, batch, opt, "encoder")["timbre"]
    assert last < 0.8 * first
    for k, v in model.amt.state_dict().items():
        torch.testing.assert_close(v, amt_before[k])  # frozen, BatchNorm statistics included


def test_bf16_steps_learn_as_float32_steps_do(clips):
    """train.precision bf16: autocast forward on a channels-last model; weights, gradients and the
    optimiser stay float32, and the loss falls as far as with float32 arithmetic."""
    batch = batch_of(clips, (0.5, 0.5))
    last = {}
    for precision in ("float32", "bf16"):
        torch.manual_seed(0)
        model = TwoBranchModel(ModelConfig())
        if precision == "bf16":
            model = model.to(memory_format=torch.channels_last)
        opt = torch.optim.AdamW(set_stage(model, "amt"), lr=3e-3)
        first = train_step(model, batch, opt, "amt", precision=precision)["loss"]
        for _ in range(25):
            last[precision] = train_step(model, batch, opt, "amt", precision=precision)["loss"]
        assert last[precision] < 0.6 * first
        assert all(p.dtype == torch.float32 for p in model.parameters())
    assert abs(last["bf16"] - last["float32"]) < 0.15 * last["float32"] + 0.01


def test_a_compiled_encoder_step_computes_what_eager_mode_does(clips):
    """train.compile: TorchInductor fuses the encoder's normalisation arithmetic; the first step's
    gradients match eager float32 to rounding, and so do the losses of the steps after it."""
    batch = batch_of(clips, (0.0, 0.5, 0.5))
    results = {}
    for compiled in (False, True):
        torch.manual_seed(0)
        model = TwoBranchModel(ModelConfig())
        opt = torch.optim.AdamW(set_stage(model, "encoder"), lr=3e-3)
        forward = torch.compile(model) if compiled else None
        losses = [train_step(model, batch, opt, "encoder", forward=forward)["timbre"]]
        grads = [p.grad.clone() for p in model.encoder.parameters()]
        losses += [train_step(model, batch, opt, "encoder", forward=forward)["timbre"] for _ in range(5)]
        results[compiled] = losses, grads
    np.testing.assert_allclose(results[True][0], results[False][0], rtol=5e-3)
    assert results[False][0][-1] < 0.95 * results[False][0][0]  # the steps compared do learn
    for a, b in zip(results[True][1], results[False][1]):
        torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-3 * float(b.abs().max()) + 1e-7)


def test_auto_precision_takes_bf16_only_where_it_is_native():
    from mixscribe.model.arithmetic import bf16_supported, resolve_precision

    assert resolve_precision("float32") == "float32" and resolve_precision("bf16") == "bf16"
    assert resolve_precision("auto", "cpu") == ("bf16" if bf16_supported() else "float32")


def test_the_encoder_stage_runs_no_amt_branch(clips):
    """Frozen, the AMT branch's outputs are not in the encoder's loss: its forward is not run."""
    model = TwoBranchModel(ModelConfig())
    calls = []
    model.amt.register_forward_hook(lambda *_: calls.append(1))
    batch = batch_of(clips, (0.0, 1.0))
    for stage, expected in (("encoder", 0), ("amt", 1), ("joint", 1)):
        calls.clear()
        opt = torch.optim.AdamW(set_stage(model, stage), lr=1e-4)
        train_step(model, batch, opt, stage)
        assert len(calls) == expected, stage


def test_unknown_stage():
    with pytest.raises(ValueError, match="stage must be one of"):
        set_stage(TwoBranchModel(ModelConfig()), "all")


def test_paper_schedulers():
    from mixscribe.train.trainer import make_scheduler, step_scheduler

    def lrs(stage, losses):
        opt = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=3e-4)
        sched = make_scheduler(opt, stage)
        out = []
        for v in losses:
            step_scheduler(sched, v)
            out.append(opt.param_groups[0]["lr"])
        return out

    plateau = lrs("amt", [1.0] * 6)
    assert plateau[3] == pytest.approx(3e-4) and plateau[4] == pytest.approx(3e-4 * 0.35)  # patience 3
    cosine = lrs("encoder", [1.0] * 13)
    assert cosine[3] == pytest.approx(3e-4) and cosine[11] == pytest.approx(3e-4)  # restarts at 4 and 12
    assert cosine[2] < 1e-4
