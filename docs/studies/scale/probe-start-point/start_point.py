"""The scale-amt curve's first point, scored offline (the run began before the trainer scored a run's
starting model): the shipped model on the run's fixed validation mixtures, built and scored by the
trainer's own functions. Usage: start_point.py SHARDS CHECKPOINT"""
import json
import sys

from mixscribe.model import load_model
from mixscribe.pipeline import load_plan
from mixscribe.train.steps import collate
from mixscribe.train.trainer import validation_examples, validation_figures

cfg = load_plan("scale-amt").train_for("amt")
examples = validation_examples(sys.argv[1], cfg)
model = load_model(sys.argv[2])
print(json.dumps(validation_figures(model, cfg, collate(examples), examples, scored=True), indent=1))
