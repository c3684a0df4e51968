"""The embedded default end to end: data generation, training to the closed
CosmoFlow target, the official checker, the summary."""
import re

import pytest

from mlperf_hpc.compliance import check_log

pytestmark = [pytest.mark.slow]


def test_main_job_reaches_target_and_passes_the_checker(main_job):
    result, workdir, logs = main_job
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "target reached" in result.stdout
    assert re.search(r"official checker .*PASS  cosmoflow closed", result.stdout)
    assert len(logs) == 1
    verdict = check_log(logs[0])
    assert verdict.passed and verdict.status == "success"
    assert (workdir / "data" / "cosmoflow-mini" / "train").is_dir()


def test_main_job_shows_progress(main_job):
    result, _, _ = main_job
    assert "generating the mini dataset" in result.stdout
    assert re.search(r"synth cosmoflow: \d+/1280 files, [\d.]+ files/s, ETA", result.stderr)
    assert re.search(r"\[cosmoflow\] epoch 1/\d+ step \d+/64 +[\d.]+ samples/s +epoch ETA", result.stderr)
    assert re.search(r"\[cosmoflow\] epoch 1: val MAE [\d.]+ \(target <= 0.124\)", result.stderr)


def test_main_job_writes_its_report(main_job):
    result, workdir, _ = main_job
    (report,) = (workdir / "logs" / "local").glob("report-*")
    assert (report / "report.html").is_file() and (report / "throughput.png").stat().st_size > 0
    assert "[run] report:" in result.stdout
