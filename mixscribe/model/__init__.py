"""The two-branch transcription model (paper-spec §2-§5)."""

from mixscribe.model.checkpoint import load_model, save_checkpoint
from mixscribe.model.network import TwoBranchModel

__all__ = ["TwoBranchModel", "load_model", "save_checkpoint"]
