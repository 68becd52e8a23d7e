"""Errors a user can act on: each names the file/row/key and the fix."""


class DeltaflowError(Exception):
    """Base class for errors deltaflow raises on bad input."""


class ConfigError(DeltaflowError):
    """The config is invalid; the message names the key and the fix."""


class DataError(DeltaflowError):
    """A data file or row is malformed; the message names file and line."""
