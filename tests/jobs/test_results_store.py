"""The results store on the published NVIDIA v3.0 logs: each run recorded
once, listed, shown, compared with the direction of each metric, and
flagged against a system's reference values, every figure checked against
the logs' own timestamps."""
from __future__ import annotations

import json
import shutil
import statistics

import pytest
import yaml

from tests.helpers import REPO, cli, log_records

TREE = REPO / "tests" / "fixtures" / "hpc_results_v3.0" / "NVIDIA"
SYSTEM = "eos_n64_ngc23.09_pytorch"


def _by_hand(log):
    """(time to train in s, train samples/s) from the log's timestamps."""
    records = log_records(log)
    times = {r["key"]: r["time_ms"] for r in records if r["key"] in ("run_start", "run_stop")}
    starts = {r["metadata"]["epoch_num"]: r["time_ms"] for r in records if r["key"] == "epoch_start"}
    stops = {r["metadata"]["epoch_num"]: r["time_ms"] for r in records if r["key"] == "epoch_stop"}
    samples = next(r["value"] for r in records if r["key"] == "train_samples") * len(stops)
    return (times["run_stop"] - times["run_start"]) / 1e3, samples / (sum(stops[e] - starts[e] for e in stops) / 1e3)


@pytest.fixture(scope="module")
def checked(tmp_path_factory):
    """A store that 'check' of the published tree filled (twice)."""
    path = tmp_path_factory.mktemp("store") / "store.sqlite"
    for _ in range(2):
        cli("check", str(TREE), env={"MLPERF_HPC_STORE": str(path)})
    return path


@pytest.fixture
def store_env(tmp_path, checked):
    shutil.copy(checked, tmp_path / "store.sqlite")
    return {"MLPERF_HPC_STORE": str(tmp_path / "store.sqlite")}


def test_every_run_check_sees_is_recorded_once(tmp_path, store_env):
    listed = json.loads(cli("results", "list", "--json", env=store_env).stdout)
    assert len(listed) == 15 and len({r["log_hash"] for r in listed}) == 15
    cosmoflow = sorted((TREE / "results" / SYSTEM / "strong" / "cosmoflow").glob("result_*.txt"))
    rows = {r["log_path"]: r for r in listed}
    for log in cosmoflow:
        row = rows[str(log)]
        ttt, rate = _by_hand(log)
        assert row["system"] == SYSTEM and row["nodes"] == 64 and row["status"] == "success"
        assert row["time_to_train_s"] == pytest.approx(ttt) and row["train_samples_per_s"] == pytest.approx(rate)
    shown = cli("results", "show", listed[0]["log_hash"][:10], env=store_env)
    assert shown.returncode == 0 and f"log_path               {listed[0]['log_path']}" in shown.stdout
    bad = cli("results", "show", "zz'; drop table runs; --", env=store_env)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "at least 4 hex digits" in bad.stderr


def test_compare_gives_the_change_of_each_median_with_its_direction(store_env):
    result = cli("results", "compare", "benchmark=cosmoflow", "benchmark=deepcam", env=store_env)
    assert result.returncode == 0, result.stderr
    a = [_by_hand(p) for p in (TREE / "results" / SYSTEM / "strong" / "cosmoflow").glob("result_*.txt")]
    b = [_by_hand(p) for p in (TREE / "results").rglob("deepcam/result_*.txt")]
    ttt = 100 * (statistics.median(t for t, _ in b) / statistics.median(t for t, _ in a) - 1)
    rate = 100 * (statistics.median(r for _, r in b) / statistics.median(r for _, r in a) - 1)
    lines = {line.split("  ")[0].strip(): line for line in result.stdout.splitlines()[1:]}
    assert f"{ttt:+.1f}%" in lines["time to train [s]"] and lines["time to train [s]"].endswith("better")
    assert f"{rate:+.1f}%" in lines["train samples/s"] and lines["train samples/s"].endswith("worse")


def test_runs_outside_the_systems_reference_values_are_flagged(tmp_path, store_env):
    rates = {str(p): _by_hand(p)[1] / 64 for p in (TREE / "results" / SYSTEM / "strong" / "cosmoflow").glob("r*.txt")}
    target = statistics.median(rates.values())
    systems = tmp_path / "systems"
    systems.mkdir()
    local = yaml.safe_load((REPO / "launch" / "systems" / "local.yaml").read_text())
    local.update(name=SYSTEM, references={"cosmoflow/unknown": {"target": target, "lower": -0.01, "upper": 0.01}})
    (systems / f"{SYSTEM}.yaml").write_text(yaml.safe_dump(local))
    env = {**store_env, "MLPERF_HPC_SYSTEMS": str(systems)}
    result = cli("results", "compare", "benchmark=cosmoflow", "benchmark=cosmoflow", "--reference", env=env)
    outside = {p for p, r in rates.items() if not target * 0.99 <= r <= target * 1.01}
    assert outside and result.returncode == 1
    assert result.stdout.count("OUTSIDE") == len(outside)           # once, though A and B hold it
    assert f"{len(outside)} run(s) outside their system's reference values" in result.stdout
    report = cli("report", "--runs", "benchmark=cosmoflow", "--out", str(tmp_path / "r"), env=env)
    assert report.returncode == 0, report.stderr
    flagged = [ln for ln in (tmp_path / "r" / "report.md").read_text().splitlines() if ln.startswith("Outside")]
    assert sorted(ln.split(": ")[1] for ln in flagged) == sorted(outside)


def test_a_store_that_cannot_be_opened_is_one_line(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    result = cli("results", "list", "--store", str(blocker / "store.sqlite"))
    assert result.returncode == 2 and result.stderr.count("\n") == 1 and "cannot be opened" in result.stderr
    result = cli("results", "list", "colour=blue", "--store", str(tmp_path / "s.sqlite"))
    assert result.returncode == 2 and "keys from system" in result.stderr
