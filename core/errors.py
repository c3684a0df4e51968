"""The exceptions users see as a single line (no traceback)."""


class HarnessError(Exception):
    """A problem with the user's input or environment.

    The message names what is wrong and how to fix it; the CLI prints it as
    one line prefixed with ``mlperf-hpc: error:`` and exits with status 2.
    Under MPI every rank finds the same problem in the same arguments, so
    only rank 0 prints it.
    """


class RankError(HarnessError):
    """A problem this rank may have alone (its shard of the data, its node's
    disk): every rank that has it prints it."""
