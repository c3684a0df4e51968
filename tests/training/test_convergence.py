"""The convergence sweep script on two fixed seeds: real runs of the
command line, each to a target its first epoch reaches (the mini config's
convergence to the closed target is the main job's and the layouts' tests;
this checks what the script runs, records and counts)."""
import json
import os
import signal
import subprocess
import sys

import pytest
from mlperf_logging.mllog import constants

from tests.helpers import REPO

pytestmark = pytest.mark.slow


def test_two_fixed_seeds_run_and_the_table_counts_them(main_job, tmp_path):
    _, workdir, _ = main_job
    out = tmp_path / "runs.json"
    result = subprocess.run(
        [sys.executable, str(REPO / "tests" / "benchmarks" / "convergence_seeds.py"), "--layouts", "single",
         "--seeds", "2", "--first-seed", "100", "--data", str(workdir / "data" / "cosmoflow-mini"),
         "--json", str(out), "--set", "train.target=5.0"], capture_output=True, text=True, cwd=REPO, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    runs = json.loads(out.read_text())
    assert [(r["seed"], r["status"], r["exit"]) for r in runs] == [(100, "success", 0), (101, "success", 0)]
    assert all(r["epochs"] == 1 and len(r["eval_error"]) == 1 and r["minutes"] > 0 for r in runs), runs
    table_row = result.stdout.splitlines()[-1]        # the summary table's only layout
    assert table_row.split()[:2] == ["single", "2/2"], result.stdout


def test_a_deepcam_sweep_records_its_accuracy_curve(deepcam_mini_data, tmp_path):
    out = tmp_path / "runs.json"
    result = subprocess.run(
        [sys.executable, str(REPO / "tests" / "benchmarks" / "convergence_seeds.py"), "--benchmark", "deepcam",
         "--layouts", "single", "--seeds", "1", "--data", str(deepcam_mini_data), "--json", str(out),
         "--set", "data.n_epochs=1", "--set", "train.target=0.01"], capture_output=True, text=True, cwd=REPO,
        timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    [run] = json.loads(out.read_text())
    assert run["status"] == "success" and run["epochs"] == 1, run
    curve = run[constants.EVAL_ACCURACY]                # MLPerf's key for DeepCAM's metric, an IoU
    assert len(curve) == 1 and 0.01 <= curve[0] <= 1.0 and "eval_error" not in run, run


def test_a_stopped_sweep_keeps_the_runs_it_finished_and_never_replaces_a_record(main_job, tmp_path):
    _, workdir, _ = main_job
    out = tmp_path / "runs.json"
    command = [sys.executable, str(REPO / "tests" / "benchmarks" / "convergence_seeds.py"), "--layouts", "single",
               "--seeds", "3", "--first-seed", "100", "--data", str(workdir / "data" / "cosmoflow-mini"),
               "--json", str(out), "--set", "train.target=5.0"]
    sweep = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, cwd=REPO, start_new_session=True)
    first = sweep.stdout.readline()                 # printed once the first run is over and kept
    os.killpg(sweep.pid, signal.SIGKILL)            # a sweep killed mid-run (the scheduler's time limit)
    sweep.wait(timeout=60)
    assert first.startswith("single       seed 100: success"), first
    runs = json.loads(out.read_text())
    assert [(r["seed"], r["status"]) for r in runs] == [(100, "success")]

    again = subprocess.run(command, capture_output=True, text=True, cwd=REPO, timeout=120)
    assert again.returncode == 1 and again.stderr.strip().splitlines() == [
        f"convergence_seeds: error: {out} exists; name a new --json file (a sweep never replaces one)"]
    assert json.loads(out.read_text()) == runs
