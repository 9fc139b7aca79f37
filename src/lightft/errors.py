"""User-facing errors.

Anything the user can fix (a bad config key, a missing column, a file that is not a model) is raised as a
``LightftError``; the CLI prints its message on one line and exits with code 2. Anything else is a bug and
keeps its traceback.
"""


class LightftError(Exception):
    """An error caused by the user's input, reported as one line without a traceback."""


class ConfigError(LightftError):
    """The configuration is invalid (unknown key, wrong type, incompatible options)."""


class DataError(LightftError):
    """The data cannot be read or does not fit the task (names the file, column or row)."""


class MissingColumnError(DataError):
    """The data has no column of the configured name (evaluate then tries the usual 'text'/'label')."""


class RunDirError(LightftError):
    """A run directory is missing, incomplete or not a lightft run."""
