"""MLPerf logs written with the official ``mlperf_logging.mllog`` package.

Only rank 0 writes (the references' convention); on every other rank the log
object swallows calls, so the driver never branches on rank. Each line goes
to the file in one unbuffered write, so a run that dies leaves a log
readable up to the point where it died.

A write that fails (a full disk, a file-size limit, a lost mount) stops the
run at once: Python's logging would print "--- Logging error ---" and train
on, and a log with holes is worse than no log. The failed line's partial
bytes are cut off, the run_stop that marks the run aborted is attempted once
(space may have come back), and the error names the log and the cause.
"""
from __future__ import annotations

import itertools
import logging
import os
import threading
from pathlib import Path
from typing import Any

from mlperf_logging.mllog.mllog import MLLogger
from mlperf_logging.mllog import constants

from core.config import SubmissionInfo
from core.errors import RankError

_logger_ids = itertools.count()

# Keys the MLPerf HPC rules use that mllog.constants does not define.
DROPOUT = "dropout"
NUMBER_OF_NODES = "number_of_nodes"
NUMBER_OF_RANKS = "number_of_ranks"
ACCELERATORS_PER_NODE = "accelerators_per_node"
PARALLEL_LAYOUT = "parallel_layout"  # the harness's own: how the run was parallelised
THREADS_PER_PROCESS = "threads_per_process"  # the harness's own: compute threads each rank used
HARNESS_COMMIT = "harness_commit"            # the harness's own: the code that ran (git describe)


class LogWriteError(RankError):
    """The log file could not be written: the run stops."""


class _LogFile(logging.Handler):
    """Appends each record as one ``os.write`` of a whole line. A failed
    write is kept in ``error`` (mllog catches whatever a handler raises and
    logs a line of its own about it) and every later record is dropped."""

    def __init__(self, path: Path):
        super().__init__()
        self.path = path
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        self.written = 0          # bytes of whole lines in the file
        self.error: str | None = None

    def emit(self, record: logging.LogRecord) -> None:
        if self.error:
            return
        data = (self.format(record) + "\n").encode()
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(self.fd, view):]
        except OSError as err:
            self.error = err.strerror or str(err)
            self._cut_partial_line()
            return
        self.written += len(data)

    def _cut_partial_line(self) -> None:
        try:
            os.ftruncate(self.fd, self.written)
            os.lseek(self.fd, self.written, os.SEEK_SET)
        except OSError:
            pass

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
        super().close()


class MLPerfLog:
    """One MLPerf log file (``:::MLLOG`` lines)."""

    def __init__(self, path: Path | None, enabled: bool = True):
        self.path = Path(path) if path else None
        self.enabled = enabled and path is not None
        self._handler: _LogFile | None = None
        self._mllogger: MLLogger | None = None
        self._run_stop_lock = threading.Lock()
        self.run_stopped = False
        self.write_failed = False
        if self.enabled:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # A private logger per file, so several runs in one process
            # (tests, sweeps) never write into each other's logs.
            logger = logging.getLogger(f"mlperf_hpc.mllog.{next(_logger_ids)}")
            logger.propagate = False
            logger.setLevel(logging.INFO)
            self._handler = _LogFile(self.path)
            logger.addHandler(self._handler)
            self._mllogger = MLLogger(logger=logger, default_stack_offset=3,
                                            root_dir=str(Path(__file__).resolve().parents[1]))

    def _write(self, kind: str, key: str, value: Any, metadata: dict | None) -> None:
        if not self._mllogger or self.write_failed:
            return
        getattr(self._mllogger, kind)(key=key, value=value, metadata=metadata)
        if self._handler.error:
            self.write_failed = True
            raise LogWriteError(f"cannot write the MLPerf log {self.path} ({self._handler.error}): the run stops; "
                                f"free space on its file system or pass --log elsewhere")

    def event(self, key: str, value: Any = None, metadata: dict | None = None) -> None:
        self._write("event", key, value, metadata)

    def start(self, key: str, value: Any = None, metadata: dict | None = None) -> None:
        self._write("start", key, value, metadata)

    def end(self, key: str, value: Any = None, metadata: dict | None = None) -> None:
        self._write("end", key, value, metadata)

    def stop_run(self, status: str, metadata: dict | None = None) -> None:
        """run_stop, once: a signal-watching thread and the main thread may
        both end a dying run. After a failed write it is tried once more
        (marking the run aborted) and a second failure is not raised: the
        first one already stops the run."""
        with self._run_stop_lock:
            if self.run_stopped:
                return
            self.run_stopped = True
            # _write directly: mllog names the caller two frames up, the driver.
            if not self.write_failed:
                self._write("end", constants.RUN_STOP, None, {"status": status, **(metadata or {})})
            elif self._handler:
                self._handler.error, self.write_failed = None, False
                try:
                    self._write("end", constants.RUN_STOP, None, {"status": "aborted", **(metadata or {})})
                except LogWriteError:
                    pass
                self.write_failed = True

    def submission(self, info: SubmissionInfo, benchmark: str) -> None:
        """The submission_* keys the checker requires of every log."""
        self.event(constants.SUBMISSION_BENCHMARK, benchmark)
        self.event(constants.SUBMISSION_ORG, info.org)
        self.event(constants.SUBMISSION_DIVISION, info.division)
        self.event(constants.SUBMISSION_STATUS, info.status)
        self.event(constants.SUBMISSION_PLATFORM, info.platform)

    def close(self) -> None:
        if self._handler:
            self._handler.close()
            self._handler = None
            self._mllogger = None
