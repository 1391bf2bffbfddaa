"""Errors a user can fix. The CLI prints their message and exits with status 2, no stack trace."""


class BenchError(Exception):
    """Base class: bad input detected before (or instead of) training."""


class ConfigError(BenchError, ValueError):
    """An unknown name, an invalid value or an impossible combination of options."""


class ArchError(ConfigError):
    """An architecture string that cannot be parsed, or a rule/architecture pairing that cannot work."""


class DataError(BenchError):
    """A data file that is missing or corrupt; the message names the file and how to obtain it."""
