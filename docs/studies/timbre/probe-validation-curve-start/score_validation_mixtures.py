"""Validation-curve figures of a checkpoint on a pipeline's fixed validation mixtures (the training
loop's own: the same remix, seed and count), e.g. the untrained encoder a study arm starts from.
Usage: python score_validation_mixtures.py FOLD_CONFIG SHARDS CHECKPOINT"""
import sys

from mixscribe.model import load_model
from mixscribe.pipeline import load_plan
from mixscribe.train.curve import validation_scores
from mixscribe.train.data import Remixer, load_split

config, data, ckpt = sys.argv[1:4]
cfg = load_plan(config).train_for("encoder")
valid = Remixer(load_split(data, "valid"), cfg.remix.for_validation(), seed=cfg.seed + 999_999)
examples = [valid.example(0, i) for i in range(cfg.valid_examples)]
print(ckpt, validation_scores(load_model(ckpt), examples, "encoder"))
