"""Errors meant for people: one line that names the problem (and the file, where there is one)."""


class MicrolatentError(Exception):
    """Base class for every error microlatent raises on bad input; the CLI prints it as one line."""


class InputError(MicrolatentError, ValueError):
    """An array or argument of the wrong shape, range or kind."""


class DataError(MicrolatentError):
    """A file that is missing, unreadable or not in the expected layout."""
