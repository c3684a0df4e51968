"""The convergence sweep script on two fixed seeds: real runs to the target."""
import json
import subprocess
import sys

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.slow


def test_two_fixed_seeds_reach_the_target_and_the_table_counts_them(main_job, tmp_path):
    _, workdir, _ = main_job
    out = tmp_path / "runs.json"
    result = subprocess.run(
        [sys.executable, str(REPO / "tests" / "benchmarks" / "convergence_seeds.py"), "--layouts", "single",
         "--seeds", "2", "--first-seed", "100", "--data", str(workdir / "data" / "cosmoflow-mini"),
         "--json", str(out)], capture_output=True, text=True, cwd=REPO, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    runs = json.loads(out.read_text())
    assert [(r["seed"], r["status"], r["exit"]) for r in runs] == [(100, "success", 0), (101, "success", 0)]
    assert all(0 < r["epochs"] < 40 for r in runs)
    table_row = result.stdout.splitlines()[-1]        # the summary table's only layout
    assert table_row.split()[:2] == ["single", "2/2"], result.stdout
