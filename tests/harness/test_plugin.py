"""A third benchmark plugged in from its own folder only (tests/toy_benchmark)
and the environment's registry entry: synthesised, trained, checked and
reported through the real command line, with its own facts."""
import json

import pytest

from tests.helpers import cli, log_records

TOY = {"MLPERF_HPC_BENCHMARKS": "toy=tests.toy_benchmark.facts:FACTS"}


@pytest.mark.slow
def test_a_plugin_needs_no_edit_outside_its_folder(tmp_path):
    help_text = cli("train", "--help", env=TOY).stdout
    assert "toy: val MAE <= 0.1" in help_text
    synth = cli("data", "synth", "toy", "--out", str(tmp_path / "d"), "--seed", "1", env=TOY)
    assert synth.returncode == 0, synth.stderr[-2000:]
    assert len(list((tmp_path / "d" / "train").glob("*.npy"))) == 64

    log = tmp_path / "toy.log"
    train = cli("train", "toy", "--data", str(tmp_path / "d"), "--seed", "3", "--log", str(log), env=TOY)
    assert train.returncode == 0, train.stderr[-3000:]
    records = log_records(log)
    assert next(r for r in records if r["key"] == "submission_benchmark")["value"] == "toy"
    errors = [r["value"] for r in records if r["key"] == "eval_error"]
    assert errors[-1] <= 0.1

    # Its required run count comes from its facts (3), not a table elsewhere.
    bench = tmp_path / "org" / "results" / "sys" / "strong" / "toy"
    bench.mkdir(parents=True)
    (bench / "result_0.txt").write_text(log.read_text())
    check = cli("check", str(tmp_path / "org"), "--json", env=TOY)
    verdicts = json.loads(check.stdout)["logs"]
    assert len(verdicts) == 1 and "toy strong needs 3 runs, found 1" in verdicts[0]["reason"]
    report = cli("report", str(log), "--out", str(tmp_path / "report"), env=TOY)
    assert report.returncode == 0, report.stderr[-2000:]
    assert "| single | 1 | 1 | 2 | 8 |" in (tmp_path / "report" / "report.md").read_text()


def test_an_unregistered_benchmark_is_one_error_line():
    result = cli("train", "nosuch")
    assert result.returncode == 2 and result.stderr.count("\n") == 1
    assert "invalid choice: 'nosuch'" in result.stderr
