"""A log cannot make ``check`` run code: values that the official checker
formats into rules-file paths are checked before any official tool reads
the log (the checker ``exec``s every rules file it loads)."""
from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from mlperf_hpc.rules_files import file_naming_keys, ruleset_folder
from tests.helpers import PYTHON, REPO, cli

TREE = REPO / "tests" / "fixtures" / "hpc_results_v3.0" / "NVIDIA"
COSMOFLOW = TREE / "results" / "eos_n64_ngc23.09_pytorch" / "strong" / "cosmoflow" / "result_0.txt"
DEEPCAM = TREE / "results" / "eos_n256_ngc23.09_pytorch" / "strong" / "deepcam" / "result_0.txt"
TOKEN = ":::MLLOG "
# Read by hand from mlperf-logging's hpc_3.0.0 rules: the keys whose POST
# code passes the log's value to enqueue_config.
KNOWN_FILE_NAMING_KEYS = {"submission_division", "submission_benchmark", "opt_name", "scheduler_type"}


def test_the_ruleset_reading_finds_every_key_that_names_a_rules_file():
    keys = file_naming_keys("3.0.0")
    assert KNOWN_FILE_NAMING_KEYS <= set(keys)
    # And an independent reading: every record whose text calls enqueue_config with the value.
    grepped = set()
    for path in ruleset_folder("3.0.0").glob("*.yaml"):
        for record in re.split(r"\n-\s+KEY:", path.read_text()):
            name = re.search(r"NAME:\s*(\w+)", record)
            if name and re.search(r"enqueue_config\(.*v\['value'\]|v\['value'\].*enqueue_config", record):
                grepped.add(name.group(1))
    assert grepped <= set(keys)
    assert keys["submission_division"] == {"closed", "open"}
    assert keys["submission_benchmark"] == {"cosmoflow", "deepcam", "oc20", "openfold"}
    # opt_name only decides whether a fixed file is loaded: any plain word
    # (open-division optimisers too), never a path.
    assert keys["opt_name"] == frozenset()


def _crafted(source: Path, key: str, value: str, out: Path) -> Path:
    """``source`` with every ``key`` record's value replaced (one added after
    submission_org where the log has none)."""
    lines, found = [], False
    for line in source.read_text().splitlines():
        if TOKEN in line:
            record = json.loads(line.split(TOKEN, 1)[1])
            if record["key"] == key:
                record["value"], found = value, True
            lines.append(TOKEN + json.dumps(record))
            if record["key"] == "submission_org" and key not in source.read_text():
                lines.append(TOKEN + json.dumps({**record, "key": key, "value": value}))
                found = True
        else:
            lines.append(line)
    assert found
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n")
    return out


def _plant(tmp_path: Path, marker: Path) -> str:
    """A rules file whose BEGIN code writes ``marker``, under every name the
    rules could format a value into; returns the value that reaches it."""
    code = f"- BEGIN:\n    CODE: \"open({str(marker)!r}, 'w').write('ran')\"\n"
    for name in ("evil_common.yaml", "evil.yaml", "closed_evil.yaml", "open_evil.yaml", "closed_deepcam_evil.yaml"):
        (tmp_path / name).write_text(code)
    # From the ruleset folder up to / (extra '..' stay at /), then down to the plant.
    return "../" * 40 + str(tmp_path / "evil").lstrip("/")


def test_the_planted_rules_file_is_real_the_official_checker_runs_it(tmp_path):
    """The attack itself, on the official checker alone: without the guard its
    code runs (what the tests below prove ``check`` never lets happen)."""
    marker = tmp_path / "ran"
    log = _crafted(COSMOFLOW, "submission_division", _plant(tmp_path, marker), tmp_path / "crafted.txt")
    subprocess.run([PYTHON, "-m", "mlperf_logging.compliance_checker", "--usage", "hpc", "--ruleset", "3.0.0",
                    str(log)], capture_output=True, timeout=120, cwd=tmp_path)
    assert marker.exists()


@pytest.mark.parametrize("key", sorted(KNOWN_FILE_NAMING_KEYS))
def test_check_runs_no_code_from_a_log(tmp_path, key):
    marker = tmp_path / "ran"
    value = _plant(tmp_path, marker)
    source = DEEPCAM if key in ("opt_name", "scheduler_type") else COSMOFLOW
    benchmark = "deepcam" if source is DEEPCAM else "cosmoflow"
    # A lone log, and the same log inside a submission tree (the summarizer
    # and the package checker call the checker on every log they see).
    lone = _crafted(source, key, value, tmp_path / "lone" / "result_0.txt")
    tree = tmp_path / "tree" / "NVIDIA"
    shutil.copytree(TREE / "systems", tree / "systems")
    folder = tree / "results" / "eos_n64_ngc23.09_pytorch" / "strong" / benchmark
    shutil.copytree(source.parent, folder)
    _crafted(source, key, value, folder / "result_0.txt")
    for target in (lone, tree):
        result = cli("check", str(target))
        assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr[-2000:]
        assert not marker.exists(), f"code from a log ran ({key}, {target})"
        failing = [ln for ln in result.stdout.splitlines() if ln.startswith("FAIL") and "result_0.txt" in ln]
        assert failing and key in failing[0] and "evil" in failing[0], result.stdout
    assert "official package checker" in result.stdout and "not run" in result.stdout
