"""mixscribe: timbre-separated multi-instrument transcription."""

from mixscribe.errors import MixscribeError
from mixscribe.schema import Note

__version__ = "0.1.0"
__all__ = ["MixscribeError", "Note", "__version__"]
