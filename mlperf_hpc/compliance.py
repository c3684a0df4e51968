"""Compliance checking of logs, directories and whole submission trees.

The verdict on each log is the official mlperf-logging compliance checker's
(``--usage hpc``), run in-process; on a submission tree
(``<org>/results/<system>/strong|weak/<benchmark>/result_N.txt``) the official
package checker runs too. On top, this module checks what those do not for a
set of runs: the required number of runs, distinct seeds, identical
hyperparameters and global batch within a benchmark, monotonic and plausible
timestamps, and run_stop status. Scores follow MLPerf HPC: strong scaling is
the mean time to train after dropping the fastest and slowest run; weak
scaling is time_to_train_all, number_of_models and instance_scale.
"""
from __future__ import annotations

import contextlib
import io
import json
import logging
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path

from mlperf_logging.compliance_checker import mlp_compliance
from mlperf_logging.result_summarizer.result_summarizer import _compute_olympic_average

from core.benchmark import facts_for_log
from core.runlog import RunLog, read_run_log

DEFAULT_RULESET = "3.0.0"
EARLIEST_PLAUSIBLE_MS = 1_546_300_800_000  # 2019-01-01, before any MLPerf HPC log


@contextlib.contextmanager
def _quiet_official_tools():
    """The official tools report through the root logger and stdout."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.CRITICAL)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        root.setLevel(level)


def _summary(messages: list[str]) -> str:
    """The first meaningful line of the checker's first complaint."""
    for message in messages:
        lines = [ln.strip() for ln in str(message).splitlines() if ln.strip()]
        if lines:
            failed = next((ln for ln in lines if ln.startswith("failed test:")), "")
            return f"{lines[0]} {failed}".strip()[:240]
    return "checker failed without a message"


@dataclass
class LogVerdict:
    path: Path
    passed: bool
    benchmark: str
    division: str
    status: str                       # run_stop status
    time_to_train_min: float | None
    reasons: list[str] = field(default_factory=list)
    scaling: str = "strong"
    group: str = ""

    @property
    def reason(self) -> str:
        return "; ".join(self.reasons)

    def line(self) -> str:
        minutes = f"{self.time_to_train_min:.2f} min" if self.time_to_train_min is not None else "-"
        tail = f"  ({self.reason})" if self.reasons else ""
        return (f"{'PASS' if self.passed else 'FAIL'}  {self.benchmark or '?'} {self.division or '?'}  "
                f"time to train {minutes}  {self.path}{tail}")


def check_log(path: str | Path, ruleset: str = DEFAULT_RULESET) -> LogVerdict:
    """The official checker's verdict on one log, plus the per-log checks it
    does not make (status success, monotonic and plausible timestamps)."""
    return _check_log(Path(path), ruleset)[0]


def _check_log(path: Path, ruleset: str) -> tuple[LogVerdict, RunLog | None]:
    if not path.is_file():
        return LogVerdict(path, False, "", "", "", None, ["log file not found"]), None
    checker = mlp_compliance.make_checker("hpc", ruleset, True, False)
    run = read_run_log(path, ruleset)
    try:
        with _quiet_official_tools():
            passed = checker.check_file(str(path), f"hpc_{ruleset}/common.yaml")
        reasons = [] if passed else [_summary([*checker.overwritable.values(), *checker.not_overwritable])]
    except FileNotFoundError as err:   # it looks up rules named after the log's division and benchmark
        reasons = [f"the official checker has no {ruleset} rules for {Path(err.filename or '').stem or 'this log'} "
                   f"(submission_division '{run.division}', submission_benchmark '{run.benchmark}')"]
    if run.status != "success":
        reasons.append(f"run_stop status is '{run.status or 'missing'}', not success")
    if any(b < a for a, b in zip(run.timestamps, run.timestamps[1:])):
        reasons.append("timestamps go backwards")
    if run.timestamps and (min(run.timestamps) < EARLIEST_PLAUSIBLE_MS
                           or max(run.timestamps) > (path.stat().st_mtime + 86400) * 1e3):
        reasons.append("timestamps outside the plausible range (clock not set?)")
    ttt = run.time_to_train_s
    return LogVerdict(path, not reasons, run.benchmark, run.division, run.status,
                      ttt / 60 if ttt is not None else None, reasons), run


# --- sets of runs ---------------------------------------------------------------

@dataclass
class Score:
    group: str
    benchmark: str
    scaling: str
    runs: int
    time_to_train_min: float | None = None     # strong: olympic mean
    time_to_train_all_min: float | None = None  # weak
    number_of_models: int | None = None         # weak
    instance_scale: int | None = None           # weak


@dataclass
class CheckReport:
    verdicts: list[LogVerdict]
    scores: list[Score]
    package: list[tuple[str, bool, str]] = field(default_factory=list)  # (tree, passed, reason)

    @property
    def passed(self) -> bool:
        return bool(self.verdicts) and all(v.passed for v in self.verdicts) and all(p for _, p, _ in self.package)

    def table(self) -> str:
        rows = [("VERDICT", "BENCHMARK", "DIVISION", "SCALING", "TTT [min]", "LOG", "REASON")]
        for v in self.verdicts:
            rows.append(("PASS" if v.passed else "FAIL", v.benchmark or "?", v.division or "?", v.scaling,
                         f"{v.time_to_train_min:.2f}" if v.time_to_train_min is not None else "-",
                         str(v.path), v.reason))
        widths = [max(len(r[i]) for r in rows) for i in range(6)]
        lines = ["  ".join(c.ljust(w) for c, w in zip(r[:6], widths)) + ("  " + r[6] if r[6] else "") for r in rows]
        for tree, ok, reason in self.package:
            lines.append(f"{'PASS' if ok else 'FAIL'}  official package checker on {tree}"
                         + (f"  ({reason})" if reason else ""))
        for s in self.scores:
            if s.scaling == "weak":
                value = (f"time_to_train_all {s.time_to_train_all_min:.2f} min, number_of_models "
                         f"{s.number_of_models}, instance_scale {s.instance_scale}"
                         if s.time_to_train_all_min is not None else "not enough converged runs")
            else:
                value = (f"{s.time_to_train_min:.2f} min" if s.time_to_train_min is not None
                         else "not enough converged runs")
            lines.append(f"SCORE  {s.benchmark} {s.scaling} [{s.group}] over {s.runs} runs: {value}")
        return "\n".join(lines)

    def to_json(self) -> str:
        return json.dumps({"passed": self.passed,
                           "logs": [{**asdict(v), "path": str(v.path), "reason": v.reason} for v in self.verdicts],
                           "package": [{"tree": t, "passed": p, "reason": r} for t, p, r in self.package],
                           "scores": [asdict(s) for s in self.scores]}, indent=2)


def _is_mllog(path: Path) -> bool:
    try:
        with open(path, encoding="latin-1") as f:
            return any(":::MLLOG" in f.readline() for _ in range(50))
    except OSError:
        return False


def _placement(path: Path) -> tuple[str, str, Path | None]:
    """(group, scaling, submission org dir) from a path in a submission tree
    (``<org>/results/<system>/<strong|weak>/<benchmark>/result_N.txt``)."""
    parts = path.parts
    if len(parts) >= 6 and parts[-5] == "results" and parts[-3] in ("strong", "weak"):
        return f"{parts[-4]}/{parts[-3]}/{parts[-2]}", parts[-3], Path(*parts[:-5])
    return str(path.parent), "strong", None


def find_logs(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    if not path.is_dir():
        return [path]  # reported as not found
    return sorted(p for p in path.rglob("*") if p.is_file() and p.suffix in (".txt", ".log") and _is_mllog(p))


def _olympic_mean(times: list[float]) -> float:
    if len(times) < 3:
        return sum(times) / len(times)
    return _compute_olympic_average(sorted(times), 1, 1)


def _check_group(runs: list[tuple[LogVerdict, RunLog]], submission: bool, scaling: str) -> None:
    """Cross-run checks inside one benchmark group; reasons go on the runs."""
    benchmark = runs[0][1].benchmark
    seen_seeds: dict = {}
    for verdict, run in runs:
        if run.seed is None:
            verdict.reasons.append("no seed logged")
        elif run.seed in seen_seeds:
            verdict.reasons.append(f"seed {run.seed} also used by {seen_seeds[run.seed].name}")
        else:
            seen_seeds[run.seed] = run.path
    reference = runs[0][1]
    for verdict, run in runs[1:]:
        differing = sorted(k for k in set(reference.hyperparameters) | set(run.hyperparameters)
                           if reference.hyperparameters.get(k) != run.hyperparameters.get(k))
        if differing:
            verdict.reasons.append(f"hyperparameters differ from {reference.path.name}: {', '.join(differing)}")
    facts = facts_for_log(benchmark)
    required = facts.required_runs if facts else None
    if submission and required:
        count = len(runs)
        short = count < required if scaling == "weak" else count != required
        if short:
            for verdict, _ in runs:
                verdict.reasons.append(f"{benchmark} {scaling} needs {'at least ' if scaling == 'weak' else ''}"
                                       f"{required} runs, found {count}")
    for verdict, _ in runs:
        verdict.passed = not verdict.reasons


def _official_package_check(org_dir: Path, ruleset: str, rcp_bypass: bool) -> tuple[str, bool, str]:
    from mlperf_logging.package_checker.package_checker import check_systems, check_training_result_files

    try:
        with _quiet_official_tools():
            systems = check_systems(str(org_dir), "hpc", ruleset)
            results = check_training_result_files(str(org_dir), "hpc", ruleset, True, False, rcp_bypass, False,
                                                  False)
    except Exception as err:  # the package checker asserts on malformed trees
        return str(org_dir), False, f"package checker could not run: {type(err).__name__}: {err}"[:240]
    reasons = [r for r, ok in (("system description invalid", systems), ("result files rejected", results))
               if not ok]
    return str(org_dir), not reasons, "; ".join(reasons)


def check_path(path: str | Path, ruleset: str = DEFAULT_RULESET, rcp_bypass: bool = False) -> CheckReport:
    """Check a log, a directory of logs, or a submission tree."""
    logs = find_logs(Path(path))
    verdicts, groups, orgs = [], defaultdict(list), set()
    for log in logs:
        verdict, run = _check_log(log, ruleset)
        verdict.group, verdict.scaling, org = _placement(log)
        verdicts.append(verdict)
        if run is not None:
            if run.instance_id is not None and org is None:
                verdict.scaling = "weak"
            groups[(verdict.group, run.benchmark, verdict.scaling)].append((verdict, run))
        if org is not None:
            orgs.add(org)
    scores = []
    for (group, benchmark, scaling), runs in sorted(groups.items()):
        _check_group(runs, submission=any(_placement(v.path)[2] for v, _ in runs), scaling=scaling)
        converged = [(v, r) for v, r in runs if r.status == "success" and r.time_to_train_s is not None]
        score = Score(group, benchmark, scaling, len(runs))
        if converged and scaling == "weak":
            score.time_to_train_all_min = (max(r.run_stop_ms for _, r in converged)
                                           - min(r.run_start_ms for _, r in converged)) / 60000
            score.number_of_models = len(converged)
            score.instance_scale = converged[0][1].nodes * max(int(converged[0][1].values.get(
                "accelerators_per_node") or 0), 1)
        elif converged:
            score.time_to_train_min = _olympic_mean([r.time_to_train_s / 60 for _, r in converged])
        scores.append(score)
    package = [_official_package_check(org, ruleset, rcp_bypass) for org in sorted(orgs)]
    return CheckReport(verdicts, scores, package)
