"""Errors a user can fix, raised by the rule library (bad options, architectures, data) and by the harness on top
of it (``bench.errors`` adds its own). A command line prints their message in one line and exits with status 2."""


class BenchError(Exception):
    """Base class: bad input detected before (or instead of) training."""


class ConfigError(BenchError, ValueError):
    """An unknown name, an invalid value or an impossible combination of options."""


class ArchError(ConfigError):
    """An architecture string that cannot be parsed, or a rule/architecture pairing that cannot work."""


class DataError(BenchError):
    """A data file that is missing or corrupt; the message names the file and how to obtain it."""
