"""Compliance checking with the official mlperf-logging checker.

The verdict is the official checker's (``--usage hpc``); this module only
runs it in-process, keeps its first complaint as a one-line reason, and reads
the time to train from the log through the official parser.
"""
from __future__ import annotations

import io
import logging
from contextlib import redirect_stdout
from dataclasses import dataclass
from pathlib import Path

from mlperf_logging.compliance_checker import mlp_compliance
from mlperf_logging.compliance_checker.mlp_parser import parse_file

DEFAULT_RULESET = "3.0.0"


@dataclass
class LogVerdict:
    path: Path
    passed: bool
    benchmark: str
    division: str
    status: str                       # run_stop status
    time_to_train_min: float | None   # run_stop - run_start
    reason: str = ""

    def line(self) -> str:
        minutes = f"{self.time_to_train_min:.2f} min" if self.time_to_train_min is not None else "-"
        verdict = "PASS" if self.passed else "FAIL"
        tail = f"  ({self.reason})" if self.reason else ""
        return f"{verdict}  {self.benchmark or '?'} {self.division or '?'}  time to train {minutes}  {self.path}{tail}"


def _summary(messages: list[str]) -> str:
    """The first meaningful line of the checker's first complaint."""
    for message in messages:
        lines = [ln.strip() for ln in str(message).splitlines() if ln.strip()]
        if not lines:
            continue
        head = lines[0]
        failed = next((ln for ln in lines if ln.startswith("failed test:")), "")
        return f"{head} {failed}".strip()[:240]
    return "checker failed without a message"


def check_log(path: str | Path, ruleset: str = DEFAULT_RULESET) -> LogVerdict:
    """Run the official hpc compliance checker on one log."""
    path = Path(path)
    if not path.is_file():
        return LogVerdict(path, False, "", "", "", None, "log file not found")
    checker = mlp_compliance.make_checker("hpc", ruleset, True, False)
    checker_logger = logging.getLogger()
    level = checker_logger.level
    checker_logger.setLevel(logging.ERROR)  # the checker reports through logging.warning
    try:
        with redirect_stdout(io.StringIO()):
            passed = checker.check_file(str(path), f"hpc_{ruleset}/common.yaml")
    finally:
        checker_logger.setLevel(level)
    messages = [*checker.overwritable.values(), *checker.not_overwritable]
    values: dict[str, object] = {}
    times: dict[str, float] = {}
    status = ""
    loglines, _ = parse_file(str(path), ruleset=ruleset)
    for line in loglines:
        values.setdefault(line.key, line.value.get("value"))
        if line.key in ("run_start", "run_stop"):
            times[line.key] = line.timestamp
        if line.key == "run_stop":
            status = str(line.value.get("metadata", {}).get("status", ""))
    minutes = None
    if "run_start" in times and "run_stop" in times:
        minutes = (times["run_stop"] - times["run_start"]) / 60000.0
    reason = "" if passed else _summary(messages)
    if passed and status != "success":
        passed, reason = False, f"run_stop status is '{status}', not success"
    return LogVerdict(path, bool(passed), str(values.get("submission_benchmark", "")),
                      str(values.get("submission_division", "")), status, minutes, reason)
