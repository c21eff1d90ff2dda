"""The scale-amt curve's first point, scored offline (the run began before the trainer scored it): the
shipped model on the run's 96 fixed validation mixtures, exactly as the trainer builds and scores them."""
import json, sys, torch
from mixscribe.model import load_model
from mixscribe.pipeline import load_plan
from mixscribe.train.curve import validation_scores
from mixscribe.train.data import Remixer, load_split
from mixscribe.train.steps import collate, losses

plan = load_plan("scale-amt")
cfg = plan.train_for("amt")
valid = Remixer(load_split(sys.argv[1], "valid"), cfg.remix.for_validation(), seed=cfg.seed + 999_999)
examples = [valid.example(0, i) for i in range(cfg.valid_examples)]
model = load_model(sys.argv[2]).eval()
with torch.no_grad():
    val = {f"val/{k}": float(v) for k, v in losses(model, collate(examples), "amt").items()}
val |= validation_scores(model, examples, "amt")
print(json.dumps(val, indent=1))
