"""User-facing errors: one clear line that names the file or field at fault."""


class MixscribeError(Exception):
    """Bad input or environment; the CLI prints the message on one line and exits non-zero."""


class ConfigError(MixscribeError):
    """A config field is unknown or has an invalid value."""


class SoundFontError(MixscribeError):
    """A SoundFont is missing, corrupt, or lacks a requested preset."""


class ShardError(MixscribeError):
    """Shards are missing, corrupt, or of another schema version."""
