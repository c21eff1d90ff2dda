"""mixscribe: timbre-separated multi-instrument transcription."""

from mixscribe.errors import MixscribeError
from mixscribe.schema import Note

__version__ = "0.1.0"
__all__ = ["MixscribeError", "Note", "__version__", "load_model", "transcribe"]


def load_model(path=None):
    """The model of a checkpoint (None: the shipped default) with the decoding it was packaged with
    (`model.decode_params`, or None); lazy import: `import mixscribe` stays light."""
    from mixscribe.transcription.inference import load_transcriber

    return load_transcriber(path)


def transcribe(audio_or_path, sr=None, k=None, checkpoint=None, model=None, backend="auto"):
    """Audio (path or array with sr) -> list[Note]; Note.stem is the timbre track. See mixscribe.transcription.inference."""
    from mixscribe.transcription.inference import transcribe as _transcribe

    return _transcribe(audio_or_path, sr=sr, k=k, checkpoint=checkpoint, model=model, backend=backend)
