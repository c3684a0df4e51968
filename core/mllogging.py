"""MLPerf logs written with the official ``mlperf_logging.mllog`` package.

Only rank 0 writes (the references' convention); on every other rank the log
object swallows calls, so the driver never branches on rank. Each line is
flushed as it is written, so a run that dies leaves a log readable up to the
point where it died.
"""
from __future__ import annotations

import itertools
import logging
import threading
from pathlib import Path
from typing import Any

from mlperf_logging.mllog.mllog import MLLogger
from mlperf_logging.mllog import constants

from core.config import SubmissionInfo

_logger_ids = itertools.count()

# Keys the MLPerf HPC rules use that mllog.constants does not define.
EVAL_ERROR = "eval_error"
DROPOUT = "dropout"
NUMBER_OF_NODES = "number_of_nodes"
NUMBER_OF_RANKS = "number_of_ranks"
ACCELERATORS_PER_NODE = "accelerators_per_node"
PARALLEL_LAYOUT = "parallel_layout"  # the harness's own: how the run was parallelised
THREADS_PER_PROCESS = "threads_per_process"  # the harness's own: compute threads each rank used


class MLPerfLog:
    """One MLPerf log file (``:::MLLOG`` lines)."""

    def __init__(self, path: Path | None, enabled: bool = True):
        self.path = Path(path) if path else None
        self.enabled = enabled and path is not None
        self._handler: logging.Handler | None = None
        self._mllogger: MLLogger | None = None
        self._run_stop_lock = threading.Lock()
        self.run_stopped = False
        if self.enabled:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # A private logger per file, so several runs in one process
            # (tests, sweeps) never write into each other's logs.
            logger = logging.getLogger(f"mlperf_hpc.mllog.{next(_logger_ids)}")
            logger.propagate = False
            logger.setLevel(logging.INFO)
            self._handler = logging.FileHandler(self.path, mode="w")
            logger.addHandler(self._handler)
            self._mllogger = MLLogger(logger=logger, default_stack_offset=2,
                                            root_dir=str(Path(__file__).resolve().parents[1]))

    def event(self, key: str, value: Any = None, metadata: dict | None = None) -> None:
        if self._mllogger:
            self._mllogger.event(key=key, value=value, metadata=metadata)

    def start(self, key: str, value: Any = None, metadata: dict | None = None) -> None:
        if self._mllogger:
            self._mllogger.start(key=key, value=value, metadata=metadata)

    def end(self, key: str, value: Any = None, metadata: dict | None = None) -> None:
        if self._mllogger:
            self._mllogger.end(key=key, value=value, metadata=metadata)

    def stop_run(self, status: str, metadata: dict | None = None) -> None:
        """run_stop, once: a signal-watching thread and the main thread may
        both end a dying run."""
        with self._run_stop_lock:
            if not self.run_stopped:
                self.run_stopped = True
                self.end(constants.RUN_STOP, metadata={"status": status, **(metadata or {})})

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
