"""Compliance checking of logs, directories and whole submission trees, and
their MLPerf HPC scores, by the official mlperf-logging tools.

Each log gets the official compliance checker's verdict (``--usage hpc``).
On a submission tree (``<org>/results/<system>/strong|weak/<benchmark>/
result_N.txt``) the official package checker runs too, RCP check included.
Scores are the official result summarizer's: its olympic mean (fastest and
slowest run dropped, non-converged runs counted), the RCP scaling factor of
closed strong-scaling sets (from the official RCP checker), and its weak
scores (time_to_train_all, number_of_models, instance_scale).

Where the official tools stop short this module adds, and says why at each
place: a verdict for every input (they raise on truncated or hand-edited
logs and on division or benchmark values they have no rules for), checks
across the runs of a set (run count, distinct seeds, identical
hyperparameters), run_stop status, plausible timestamps, value types, each
submission key exactly once and in agreement with the tree's system JSON.
The package checker and the RCP checker write ``scaling.json`` into the
folders they check, so every official tool runs on a private copy: a check
never changes the tree it reads.
"""
from __future__ import annotations

import contextlib
import io
import json
import logging
import re
import shutil
import tempfile
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path

import yaml
from mlperf_logging import benchmark_meta
from mlperf_logging.compliance_checker import mlp_compliance
from mlperf_logging.rcp_checker import rcp_checker
from mlperf_logging.result_summarizer import result_summarizer

from core.benchmark import facts_for_log
from core.config import HPC_RULESET
from core.runlog import RunLog, read_run_log
from mlperf_hpc.rules_files import ruleset_folder, unsafe_values

EARLIEST_PLAUSIBLE_MS = 1_546_300_800_000  # 2019-01-01, before any MLPerf HPC log
# Value types (and least values) of the keys HPC logs carry. The official
# checker evaluates its rules on whatever a value is: a string where a number
# belongs passes some rules and makes others raise inside the checker, and a
# sample count of -1 passes its "not empty" rule.
VALUE_RULES: dict[str, tuple[type, float | None]] = {
    **{key: (str, None) for key in ("submission_org", "submission_platform", "submission_division",
                                    "submission_status", "submission_benchmark")},
    **{key: (int, 1) for key in ("number_of_nodes", "global_batch_size", "train_samples", "eval_samples",
                                 "batchnorm_group_size", "gradient_accumulation_frequency")},
    **{key: (int, 0) for key in ("accelerators_per_node", "seed", "opt_learning_rate_warmup_epochs")},
    **{key: (float, 0) for key in ("eval_error", "eval_accuracy", "opt_base_learning_rate", "opt_lr",
                                   "opt_learning_rate_warmup_factor", "opt_weight_decay", "dropout")},
}
# *_start / *_stop pairs, and those whose last one may stay open (a run that
# stops at its target mid-epoch, as the official rules allow, or dies).
INTERVALS = ("init", "staging", "run", "epoch", "eval", "block")
MAY_STAY_OPEN = ("run", "epoch", "eval", "block")


@contextlib.contextmanager
def _official_tools():
    """The official tools report through the root logger and stdout, and the
    checker keeps a module-level queue of rule files that a failed check
    leaves filled: start each call with an empty queue and quiet output."""
    mlp_compliance.enqueued_configs.clear()
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.CRITICAL)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        root.setLevel(level)
        mlp_compliance.enqueued_configs.clear()


def official_rules(ruleset: str, division: str, benchmark: str) -> dict[str, dict]:
    """The official checker's key records (NAME, REQ, CHECK, ...) that apply
    to a log of this division and benchmark, by key."""
    folder = ruleset_folder(ruleset)
    records: dict[str, dict] = {}
    for name in ("common", f"{division}_common", f"{division}_{benchmark}"):
        path = folder / f"{name}.yaml"
        if path.is_file():
            for item in yaml.safe_load(path.read_text()) or []:
                if "KEY" in item:
                    records[item["KEY"]["NAME"]] = item["KEY"]
    return records


def _failing_keys(messages: list[str]) -> list[str]:
    """The keys the official checker's messages are about, in order."""
    keys = []
    for message in messages:
        first = str(message).strip().splitlines()[0] if str(message).strip() else ""
        keys += re.findall(r"'(\w+)'", first) + re.findall(r"Failed checks for (\w+)", first)
        keys += re.findall(r'"key": "(\w+)"', str(message))
    return list(dict.fromkeys(keys))


def _summary(messages: list[str]) -> str:
    """The first meaningful line of the checker's first complaint, and every key it complains about."""
    first = ""
    for message in messages:
        lines = [ln.strip() for ln in str(message).splitlines() if ln.strip()]
        if lines:
            failed = next((ln for ln in lines if ln.startswith("failed test:")), "")
            first = f"{lines[0]} {failed}".strip()[:200]
            break
    keys = _failing_keys(messages)
    return f"official checker: {first or 'failed without a message'}" + (f" (keys: {', '.join(keys)})" if keys else "")


# --- one log -----------------------------------------------------------------------

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
    official_tools_may_read: bool = True   # False: unreadable, or a value names a rules file

    @property
    def reason(self) -> str:
        return "; ".join(self.reasons)

    def line(self) -> str:
        minutes = f"{self.time_to_train_min:.2f} min" if self.time_to_train_min is not None else "-"
        tail = f"  ({self.reason})" if self.reasons else ""
        return (f"{'PASS' if self.passed else 'FAIL'}  {self.benchmark or '?'} {self.division or '?'}  "
                f"time to train {minutes}  {self.path}{tail}")


def check_log(path: str | Path, ruleset: str = HPC_RULESET) -> LogVerdict:
    """The official checker's verdict on one log, plus the per-log checks it
    does not make (status success, value types, plausible timestamps)."""
    return _check_log(Path(path), ruleset)[0]


def _wrong_type(value: object, expected: type) -> bool:
    if expected is str:
        return not isinstance(value, str)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return True
    return expected is int and not float(value).is_integer()


def _lint(run: RunLog, ruleset: str) -> list[str]:
    """What the official checker lets through or cannot evaluate."""
    reasons = []
    for key, (expected, least) in VALUE_RULES.items():
        values = [v for _, v in run.series.get(key, [])] or ([run.values[key]] if key in run.values else [])
        wrong = [v for v in values if _wrong_type(v, expected)]
        if wrong:
            reasons.append(f"{key} must be {'a string' if expected is str else 'a number'}, not {wrong[0]!r}")
        elif least is not None and any(v < least for v in values):
            reasons.append(f"{key} must be >= {least}, not {min(values)!r}")
    for name in INTERVALS:
        starts, stops = (len(run.times.get(f"{name}_{end}", [])) for end in ("start", "stop"))
        if not (starts == stops or (name in MAY_STAY_OPEN and starts == stops + 1)):
            reasons.append(f"{name}_start and {name}_stop do not pair up ({starts} starts, {stops} stops)")
    # The checker only warns about an EXACTLY_ONE key repeated with the same value.
    rules = official_rules(ruleset, run.division, run.benchmark)
    once = sorted(k for k, r in rules.items() if r.get("REQ") == "EXACTLY_ONE" or k.startswith("submission_"))
    repeated = [k for k in once if len(run.times.get(k, [])) > 1]
    if repeated:
        reasons.append(f"{', '.join(repeated)} must appear exactly once, found "
                       f"{', '.join(str(len(run.times[k])) for k in repeated)}")
    return reasons


def _check_log(path: Path, ruleset: str) -> tuple[LogVerdict, RunLog | None]:
    if not path.is_file():
        return LogVerdict(path, False, "", "", "", None, ["log file not found"], official_tools_may_read=False), None
    run = read_run_log(path, ruleset)
    unsafe = unsafe_values(run.values_of, ruleset)
    if run.parse_errors:
        # The official checker raises on such a record; its line is the verdict.
        reasons = [f"{run.parse_errors[0]} (the official checker cannot read the log; {len(run.parse_errors)} "
                   f"record(s) unreadable)"]
    elif not run.timestamps:
        reasons = ["no MLLOG records: an empty or binary file, not an MLPerf log"]
    elif unsafe:
        reasons = unsafe
    else:
        reasons = _official_verdict(path, run, ruleset) + _lint(run, ruleset)
    if run.timestamps:
        if run.status != "success":
            reasons.append(f"run_stop status is '{run.status or 'missing'}', not success")
        if any(b < a for a, b in zip(run.timestamps, run.timestamps[1:])):
            reasons.append("timestamps go backwards")
        if min(run.timestamps) < EARLIEST_PLAUSIBLE_MS or max(run.timestamps) > (path.stat().st_mtime + 86400) * 1e3:
            reasons.append("timestamps outside the plausible range (clock not set?)")
    ttt = run.time_to_train_s
    return LogVerdict(path, not reasons, run.benchmark, run.division, run.status,
                      ttt / 60 if ttt is not None else None, reasons,
                      official_tools_may_read=not (run.parse_errors or unsafe or not run.timestamps)), run


def _official_verdict(path: Path, run: RunLog, ruleset: str) -> list[str]:
    checker = mlp_compliance.make_checker("hpc", ruleset, True, False)
    try:
        with _official_tools():
            passed = checker.check_file(str(path), f"hpc_{ruleset}/common.yaml")
    except FileNotFoundError as err:   # it loads rule files named after values in the log
        rules = official_rules(ruleset, run.division, run.benchmark)
        chosen_by = [k for k, r in rules.items() if "enqueue_config" in str(r.get("POST", "")) and k in run.values]
        return [f"the official checker has no {ruleset} rules named {Path(err.filename or '').stem}, which it "
                f"derives from " + ", ".join(f"{k} {run.values[k]!r}" for k in chosen_by)]
    except Exception as err:           # a rule raising outside the checker's own guard (the type lint names the key)
        return [f"the official checker stopped ({type(err).__name__}: {str(err)[:120]})"]
    return [] if passed else [_summary([*checker.overwritable.values(), *checker.not_overwritable])]


# --- sets of runs and their scores ------------------------------------------------------

@dataclass
class Score:
    group: str
    benchmark: str
    scaling: str
    runs: int
    division: str = ""
    time_to_train_min: float | None = None      # strong: official olympic mean x RCP scaling
    rcp: str | None = None                      # closed strong: the official RCP checker's verdict
    rcp_passed: bool | None = None
    rcp_scaling_factor: float | None = None
    time_to_train_all_min: float | None = None  # weak
    number_of_models: int | None = None          # weak
    instance_scale: int | None = None            # weak
    note: str = ""                               # why a score is missing

    def text(self) -> str:
        if self.scaling == "weak":
            if self.time_to_train_all_min is None:
                return self.note or "no score"
            return (f"time_to_train_all {self.time_to_train_all_min:.4f} min, number_of_models "
                    f"{self.number_of_models}, instance_scale {self.instance_scale}")
        if self.time_to_train_min is None:
            return self.note or "no score"
        factor = f" (RCP scaling x{self.rcp_scaling_factor:.6f})" if (self.rcp_scaling_factor or 1.0) != 1.0 else ""
        return f"{self.time_to_train_min:.4f} min{factor}"


def _copy_as_results(runs: list[RunLog], folder: Path, source: Path | None) -> None:
    """The runs as the official tools expect them: result_N.txt in one folder
    (plain copies: published trees are often read-only)."""
    folder.mkdir(parents=True)
    for i, run in enumerate(runs):
        shutil.copyfile(run.path, folder / f"result_{i}.txt")
    if source is not None and (source / "scaling.json").is_file():
        shutil.copyfile(source / "scaling.json", folder / "scaling.json")


def official_score(runs: list[RunLog], benchmark: str, scaling: str, division: str, ruleset: str,
                   rcp_bypass: bool = False, source: Path | None = None) -> Score:
    """The official result summarizer's score of one benchmark's runs (and,
    for a closed strong-scaling set, the official RCP checker's verdict and
    scaling factor, as the package checker would write it before the
    summarizer reads it). ``source`` is the runs' own folder, for a
    review-committee ``scaling.json``."""
    score = Score("", benchmark, scaling, len(runs), division)
    counts = benchmark_meta.get_result_file_counts("hpc")
    if benchmark not in counts:
        score.note = f"the official summarizer does not score '{benchmark}'"
        return score
    with tempfile.TemporaryDirectory() as tmp, _official_tools():
        folder = Path(tmp) / benchmark
        _copy_as_results(runs, folder, source)
        if scaling == "weak":
            values, _ = result_summarizer._compute_weak_score_standalone(benchmark, "", False, str(folder), "hpc",
                                                                          ruleset)
            if values:
                score.time_to_train_all_min = values[f"{benchmark}:time_to_train_all"]
                score.number_of_models = values[f"{benchmark}:number_of_models"]
                score.instance_scale = values[f"{benchmark}:instance_scale"]
            else:
                score.note = f"fewer than {counts[benchmark]} converged runs (the official weak-scaling minimum)"
            return score
        if division == "closed":
            if len(runs) < counts[benchmark]:
                score.rcp = f"not checked: {len(runs)} of {counts[benchmark]} runs"
            else:
                score.rcp_passed, message, _ = rcp_checker.check_directory(
                    str(folder), "hpc", ruleset, False, False, rcp_pass="pruned_rcps", rcp_bypass=rcp_bypass,
                    set_scaling=True)
                score.rcp = message
        value, _, factor = result_summarizer._compute_strong_score_standalone(benchmark, "", False, str(folder),
                                                                              "hpc", ruleset)
    score.time_to_train_min, score.rcp_scaling_factor = value, factor
    if value is None:
        score.note = "no olympic score: it needs at least 3 runs, at most one of them not converged"
    return score


@dataclass
class CheckReport:
    verdicts: list[LogVerdict]
    scores: list[Score]
    package: list[tuple[str, bool, str]] = field(default_factory=list)  # (tree, passed, reason)
    rcp_bypass: bool = False

    @property
    def passed(self) -> bool:
        return (bool(self.verdicts) and all(v.passed for v in self.verdicts) and all(p for _, p, _ in self.package)
                and all(s.rcp_passed is not False for s in self.scores))

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
                         + (" (with --rcp-bypass)" if self.rcp_bypass else "") + (f"  ({reason})" if reason else ""))
        for s in self.scores:
            if s.rcp is not None:
                verdict = {True: "PASS", False: "FAIL", None: "----"}[s.rcp_passed]
                bypass = " (with --rcp-bypass)" if self.rcp_bypass and s.rcp_passed is not None else ""
                lines.append(f"{verdict}  RCP {s.benchmark} [{s.group}]: {s.rcp}{bypass}")
            lines.append(f"SCORE  {s.benchmark} {s.scaling} [{s.group}] over {s.runs} runs: {s.text()}")
        return "\n".join(lines)

    def to_json(self) -> str:
        return json.dumps({"passed": self.passed, "rcp_bypass": self.rcp_bypass,
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


def _check_group(runs: list[tuple[LogVerdict, RunLog]], submission: bool, scaling: str) -> None:
    """Cross-run checks inside one benchmark group; reasons go on the runs."""
    benchmark = runs[0][1].benchmark
    seen_seeds: dict = {}
    for verdict, run in runs:
        seed = json.dumps(run.seed, sort_keys=True)    # a hand-edited seed may be a list or an object
        if run.seed is None:
            verdict.reasons.append("no seed logged")
        elif seed in seen_seeds:
            verdict.reasons.append(f"seed {run.seed} also used by {seen_seeds[seed].name}")
        else:
            seen_seeds[seed] = run.path
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


def _lint_against_system(runs: list[tuple[LogVerdict, RunLog]], org_dir: Path, system: str, scaling: str) -> None:
    """Each log's submission keys and scale agree with the tree's system JSON."""
    path = org_dir / "systems" / f"{system}.json"
    try:
        desc = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        for verdict, _ in runs:
            verdict.reasons.append(f"system description {path} unreadable ({type(err).__name__})")
        return
    expected = {"submission_org": desc.get("submitter"), "submission_division": desc.get("division"),
                "submission_status": desc.get("status")}
    if scaling == "strong":   # a weak-scaling JSON describes the whole system, a log one instance
        expected.update(number_of_nodes=desc.get("number_of_nodes"),
                        accelerators_per_node=desc.get("accelerators_per_node"))
    for verdict, run in runs:
        for key, want in expected.items():
            if str(run.values.get(key)) != str(want):
                verdict.reasons.append(f"{key} is {run.values.get(key)!r} but {path.name} says {want!r}")


def _unreadable_by_official_tools(org_dir: Path, ruleset: str) -> list[Path]:
    """Every file the package checker would hand to the official checker
    (any file under ``results/``, not only the ones ``find_logs`` takes for
    logs) whose values name rules files."""
    return [p for p in sorted((org_dir / "results").rglob("*"))
            if p.is_file() and unsafe_values(read_run_log(p, ruleset).values_of, ruleset)]


def _official_package_check(org_dir: Path, ruleset: str, rcp_bypass: bool) -> tuple[str, bool, str]:
    from mlperf_logging.package_checker.package_checker import check_systems, check_training_result_files

    unsafe = _unreadable_by_official_tools(org_dir, ruleset)
    if unsafe:
        return str(org_dir), False, (f"not run: {len(unsafe)} file(s) under results/ hold values naming rules "
                                     f"files, first {unsafe[0].relative_to(org_dir)}")
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / org_dir.name
        shutil.copytree(org_dir, copy, copy_function=shutil.copyfile)
        for folder in [copy, *copy.rglob("*")]:
            if folder.is_dir():
                folder.chmod(0o755)
        try:
            with _official_tools():
                systems = check_systems(str(copy), "hpc", ruleset)
                results = check_training_result_files(str(copy), "hpc", ruleset, True, False, rcp_bypass, False,
                                                      False)
        except Exception as err:  # the package checker asserts on malformed trees
            return str(org_dir), False, f"package checker could not run: {type(err).__name__}: {err}"[:240]
    reasons = [r for r, ok in (("system description invalid", systems), ("result files rejected", results))
               if not ok]
    return str(org_dir), not reasons, "; ".join(reasons)


def _score(runs: list[RunLog], benchmark: str, scaling: str, division: str, ruleset: str, rcp_bypass: bool,
           source: Path) -> Score:
    """``official_score``, or a note where the official tools fail on the set."""
    try:
        return official_score(runs, benchmark, scaling, division, ruleset, rcp_bypass, source)
    except Exception as err:  # the summarizer and RCP checker assume well-formed logs
        return Score("", benchmark, scaling, len(runs), division,
                     note=f"the official summarizer could not score this set ({type(err).__name__}: "
                          f"{str(err)[:100]})")


def check_path(path: str | Path, ruleset: str = HPC_RULESET, rcp_bypass: bool = False) -> CheckReport:
    """Check a log, a directory of logs, or a submission tree."""
    logs = find_logs(Path(path))
    verdicts, groups, orgs = [], defaultdict(list), set()
    for log in logs:
        verdict, run = _check_log(log, ruleset)
        verdict.group, verdict.scaling, org = _placement(log)
        verdicts.append(verdict)
        if run is not None and run.timestamps:
            if run.instance_id is not None and org is None:
                verdict.scaling = "weak"
            groups[(verdict.group, run.benchmark, verdict.scaling, org)].append((verdict, run))
        if org is not None:
            orgs.add(org)
    scores = []
    for (group, benchmark, scaling, org), runs in sorted(groups.items(), key=lambda item: item[0][:3]):
        _check_group(runs, submission=org is not None, scaling=scaling)
        if org is not None:
            _lint_against_system(runs, org, group.split("/")[0], scaling)
        for verdict, _ in runs:
            verdict.passed = not verdict.reasons
        unreadable = sum(not verdict.official_tools_may_read for verdict, _ in runs)
        if unreadable:     # the harness's own checks above ran; the official summarizer must not see them
            score = Score("", benchmark, scaling, len(runs), runs[0][1].division,
                          note=f"not scored: {unreadable} log(s) the official tools must not read")
        else:
            score = _score([r for _, r in runs], benchmark, scaling, runs[0][1].division, ruleset, rcp_bypass,
                           runs[0][1].path.parent)
        score.group = group
        scores.append(score)
    package = [_official_package_check(org, ruleset, rcp_bypass) for org in sorted(orgs)]
    return CheckReport(verdicts, scores, package, rcp_bypass)
