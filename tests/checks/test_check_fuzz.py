"""``check`` on every kind of broken input: real published logs mutated key by
key (dropped, duplicated, of the wrong type, of a wrong value), and files
that are not logs at all. Each gets one verdict and no traceback; a failing
verdict names the key; and what the rules forbid fails."""
from __future__ import annotations

import json
import multiprocessing
import shutil
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pytest

from mlperf_hpc.compliance import VALUE_RULES, check_log, check_path, official_rules
from tests.helpers import REPO, cli

TREE = REPO / "tests" / "fixtures" / "hpc_results_v3.0" / "NVIDIA" / "results"
LOGS = [TREE / "eos_n64_ngc23.09_pytorch" / "strong" / "cosmoflow" / "result_0.txt",
        TREE / "eos_n256_ngc23.09_pytorch" / "strong" / "deepcam" / "result_0.txt"]
TOKEN = ":::MLLOG "


def _records(path: Path) -> list[dict | str]:
    """The log's lines, MLLOG ones parsed."""
    return [json.loads(line.split(TOKEN, 1)[1]) if TOKEN in line else line
            for line in path.read_text(encoding="latin-1").splitlines()]


def _write(path: Path, records: list) -> Path:
    path.write_text("".join((TOKEN + json.dumps(r) if isinstance(r, dict) else r) + "\n" for r in records))
    return path


def _invalid(value):
    """A value no rule accepts in place of ``value``."""
    if isinstance(value, bool) or value is None:
        return -1
    if isinstance(value, (int, float)):
        return -1
    if isinstance(value, str):
        return ""
    return []


def _wrong_type(value):
    return 12345 if isinstance(value, str) else str(value)


def mutations(path: Path):
    """(key, kind, records, must_fail) for every key of the log."""
    records = _records(path)
    logged = [r for r in records if isinstance(r, dict)]
    first = {}
    for r in logged:
        first.setdefault(r["key"], r)
    division = first["submission_division"]["value"]
    rules = official_rules("3.0.0", division, first["submission_benchmark"]["value"])
    for key, record in first.items():
        rule = rules.get(key, {})
        req = rule.get("REQ", "")
        alternatives = req[len("AT_LEAST_ONE_OR("):-1].split(",") if req.startswith("AT_LEAST_ONE_OR") else []
        required = req in ("EXACTLY_ONE", "AT_LEAST_ONE") or (alternatives and not any(a.strip() in first
                                                                                      for a in alternatives))
        once = req == "EXACTLY_ONE" or key.startswith("submission_")
        at = records.index(record)
        yield key, "drop", [r for r in records if not (isinstance(r, dict) and r["key"] == key)], \
            bool(required) or key == "run_stop"
        yield key, "duplicate", records[:at + 1] + [dict(record)] + records[at + 1:], once
        typed = {**record, "value": _wrong_type(record["value"])}
        yield key, "type", records[:at] + [typed] + records[at + 1:], key in VALUE_RULES
        changed = {**record, "value": _invalid(record["value"])}
        checks_value = "v['value']" in str(rule.get("CHECK", "")) or key in VALUE_RULES
        yield key, "value", records[:at] + [changed] + records[at + 1:], once and checks_value


@pytest.mark.slow
@pytest.mark.parametrize("log", LOGS, ids=lambda p: p.parts[-2])
def test_every_key_mutated_gets_a_verdict_naming_it(tmp_path, log):
    problems, count = [], 0
    for key, kind, records, must_fail in mutations(log):
        mutated = _write(tmp_path / f"{key}-{kind}.txt", records)
        verdict = check_log(mutated)
        count += 1
        if must_fail and verdict.passed:
            problems.append(f"{kind} {key}: passed")
        if not verdict.passed and key not in verdict.reason:
            problems.append(f"{kind} {key}: the reason does not name it: {verdict.reason}")
    assert count > 100
    assert not problems, "\n".join(problems)


def test_the_unmutated_logs_pass():
    for log in LOGS:
        verdict = check_log(log)
        assert verdict.passed, verdict.reason


@pytest.mark.parametrize("content, reason", [
    (b"", "no MLLOG records"),
    (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)) * 4, "no MLLOG records"),
    (b':::MLLOG {"namespace": "", "time_ms": 1695625556232, "event_type": "POINT_IN_TIME", "key": "cache_cl',
     "MLLOG record 1"),
    (b':::MLLOG {"key": "run_stop", "value": null}\n', "MLLOG record 1: has no 'time_ms'"),
    (b":::MLLOG [1, 2, 3]\n", "MLLOG record 1: is not a JSON object"),
])
def test_files_that_are_not_logs_get_one_failing_row(tmp_path, content, reason):
    path = tmp_path / "result_0.txt"
    path.write_bytes(content)
    result = cli("check", str(path))
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr[-2000:]
    rows = [ln for ln in result.stdout.splitlines() if ln.startswith(("PASS", "FAIL"))]
    assert len(rows) == 1 and rows[0].startswith("FAIL") and reason in rows[0], result.stdout


def test_a_truncated_log_is_one_verdict_naming_the_cut_and_the_missing_run_stop(tmp_path):
    text = LOGS[0].read_text()
    cut = text.index('"key": "eval_start"') + 20     # inside a record, before run_stop
    path = tmp_path / "cut.txt"
    path.write_text(text[:cut])
    verdict = check_log(path)
    assert not verdict.passed
    assert "cannot read the log" in verdict.reason and "run_stop status is 'missing'" in verdict.reason


@pytest.mark.parametrize("key, value, named", [
    ("submission_division", "semi-open", "submission_division"),
    ("submission_benchmark", "resnet", "submission_benchmark"),
    ("submission_benchmark", "toy", "submission_benchmark"),
])
def test_values_the_official_checker_has_no_rules_for(tmp_path, key, value, named):
    records = [dict(r, value=value) if isinstance(r, dict) and r["key"] == key else r for r in _records(LOGS[0])]
    verdict = check_log(_write(tmp_path / "r.txt", records))
    assert not verdict.passed and named in verdict.reason and value in verdict.reason


# --- every value replaced by what a careless or hostile author might write --------

def _planted_rules(folder: Path, marker: Path) -> str:
    """Rules files whose code writes ``marker``, under every name a rules
    path could take; returns a value that walks from the ruleset to them."""
    folder.mkdir()
    for name in ("x_common.yaml", "x.yaml", "closed_x.yaml", "open_x.yaml", "closed_deepcam_x.yaml"):
        (folder / name).write_text(f"- BEGIN:\n    CODE: \"open({str(marker)!r}, 'a').write('ran')\"\n")
    return "../" * 40 + str(folder / "x").lstrip("/")


# The replacement values, chosen by hand, not from any rule table.
HOSTILE_VALUES = {"empty": "", "undefined": "UNDEFINED", "huge": 1e308, "big_int": 10 ** 30, "negative": -1,
                  "list": [1, "a"], "object": {"value": 1}, "null": None, "bool": True, "nan_text": "NaN"}
LINE_MUTATIONS = ("delete", "duplicate", "truncate", "binary")


def _mutants(records: list, path_value: str):
    """(kind, key, records) for each key of the log and each hostile value,
    each line mutation, and the rules path."""
    keys = list(dict.fromkeys(r["key"] for r in records if isinstance(r, dict)))
    values = {**HOSTILE_VALUES, "path": path_value}
    for key in keys:
        at = next(i for i, r in enumerate(records) if isinstance(r, dict) and r["key"] == key)
        for kind, value in values.items():
            yield kind, key, records[:at] + [{**records[at], "value": value}] + records[at + 1:]
        line = TOKEN + json.dumps(records[at])
        lines = {"delete": [], "duplicate": [records[at], records[at]], "truncate": [line[:len(line) // 2]],
                 "binary": [line[:20] + "\x00\xff\xfe" + line[40:]]}
        for kind in LINE_MUTATIONS:
            yield kind, key, records[:at] + lines[kind] + records[at + 1:]


def _check_tree(org: str) -> list[str]:
    """``check`` of one submission tree in a fresh process; the exception a
    user would see as a traceback, if any."""
    try:
        report = check_path(org)
        report.table(), report.to_json()
        return [] if not report.passed else [f"{org}: passed"]
    except Exception as err:
        return [f"{org}: {type(err).__name__}: {err}"]


@pytest.mark.slow
def test_check_never_ends_in_a_traceback_and_never_runs_code_from_a_log(tmp_path):
    marker = tmp_path / "code-ran"
    path_value = _planted_rules(tmp_path / "planted", marker)
    tried, trees = 0, []
    systems = REPO / "tests" / "fixtures" / "hpc_results_v3.0" / "NVIDIA" / "systems"
    for log in LOGS:
        benchmark = log.parts[-2]
        by_kind: dict[str, list] = {}
        for kind, key, records in _mutants(_records(log), path_value):
            by_kind.setdefault(kind, []).append((key, records))
        for kind, mutants in by_kind.items():
            # A submission tree per kind of mutation: every log through the
            # per-log checks, the summarizer and the package checker.
            org = tmp_path / f"{benchmark}-{kind}" / "NVIDIA"
            shutil.copytree(systems, org / "systems")
            folder = org / "results" / log.parts[-4] / "strong" / benchmark
            folder.mkdir(parents=True)
            for i, (key, records) in enumerate(mutants):
                _write(folder / f"result_{i}.txt", records)
            tried += len(mutants)
            trees.append(str(org))
    # Both cores: the trees are independent (fresh processes, no TensorFlow).
    with ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn")) as pool:
        problems = [p for found in pool.map(_check_tree, trees) for p in found]
    print(f"logs tried {tried}, tracebacks {len(problems)}, code executions {int(marker.exists())}")
    assert tried > 1000 and not problems, "\n".join(problems)
    assert not marker.exists()


def test_a_binary_file_and_a_division_of_undefined_through_the_cli(tmp_path):
    junk = tmp_path / "result_0.txt"
    junk.write_bytes(bytes(range(256)) * 64)
    records = [dict(r, value="UNDEFINED") if isinstance(r, dict) and r["key"] == "submission_division" else r
               for r in _records(LOGS[0])]
    folder = tmp_path / "runs"
    folder.mkdir()
    for i in range(3):                  # enough runs for the summarizer to score them
        _write(folder / f"result_{i}.txt", records)
    for target in (junk, folder):
        result = cli("check", str(target))
        assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr[-2000:]
    assert "submission_division 'UNDEFINED' is not one of closed, open" in result.stdout
