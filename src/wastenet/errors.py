"""Errors a user can cause. The CLI prints their message alone, without a traceback."""


class WasteNetError(Exception):
    """A problem with the user's input (path, image, config, model file, camera)."""


class ConfigError(WasteNetError):
    """A config file or option that cannot be used as given."""


class ModelFileError(WasteNetError):
    """A model bundle or exported artifact that is damaged, foreign or mismatched."""


class SourceError(WasteNetError):
    """A frame source or data source that cannot be opened or read."""
