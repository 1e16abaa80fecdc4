"""Errors a user can cause, and the exit codes of the ``wastenet`` command.

The CLI prints a ``WasteNetError``'s message alone, without a traceback.
"""

from enum import IntEnum


class ExitCode(IntEnum):
    """What ``wastenet`` returns (listed in the README under "Exit codes").

    A supervisor such as systemd (``Restart=on-failure``) restarts on any of the
    non-zero ones; only ``OK`` means the run ended as asked.
    """

    OK = 0  # done: the source ended, --max-frames was reached, or SIGINT/SIGTERM stopped it
    FAILED = 1  # an unexpected error: a bug (Python prints its traceback)
    BAD_INPUT = 2  # a WasteNetError (bad option, path, model, door map, source URI...)
    # or an OSError (a folder that cannot be made, a full disk): one line naming the file
    SOURCE_LOST = 3  # `wastenet run`: the camera or stream failed every reconnect attempt
    STUCK = 4  # `wastenet run`: the loop stuck in the engine, a driver or a hook (its watchdog)
    CHECK_FAILED = 5  # `wastenet verify`: an artifact lost more accuracy than --max-drop allows;
    # `wastenet gate`: the new model is worse than the old one on a held-out source
    INTERRUPTED = 130  # Ctrl-C outside the bin's own handling (128 + SIGINT)


class WasteNetError(Exception):
    """A problem with the user's input (path, image, config, model file, camera)."""


class ConfigError(WasteNetError):
    """A config file or option that cannot be used as given."""


class ModelFileError(WasteNetError):
    """A model bundle or exported artifact that is damaged, foreign or mismatched."""


class SourceError(WasteNetError):
    """A frame source or data source that cannot be opened or read."""
