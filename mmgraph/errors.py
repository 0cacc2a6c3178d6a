"""Exceptions raised for bad user input.

Every error a user can cause (a malformed file, an unknown config key, a foreign checkpoint)
derives from :class:`MMGraphError`; the CLI prints its message on one line and exits non-zero,
while any other exception is a bug and keeps its traceback.
"""


class MMGraphError(Exception):
    """Base class for errors caused by user input."""


class DataError(MMGraphError):
    """A dataset file or table is missing or malformed."""


class ConfigError(MMGraphError):
    """A configuration key or value is unknown or invalid."""


class CheckpointError(MMGraphError):
    """A checkpoint is missing, truncated, or was not written by mmgraph."""


class DataWarning(UserWarning):
    """A dataset was usable but had to be repaired (rows dropped); the message says how."""
