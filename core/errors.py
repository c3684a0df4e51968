"""The one exception type users see as a single line (no traceback)."""


class HarnessError(Exception):
    """A problem with the user's input or environment.

    The message names what is wrong and how to fix it; the CLI prints it as
    one line prefixed with ``mlperf-hpc: error:`` and exits with status 2.
    """
