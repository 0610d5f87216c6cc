"""The one error the build reports: a clear line, no traceback."""


class BuildError(Exception):
    """A build step failed; the message says which and why."""
