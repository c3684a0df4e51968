"""Whole-set compliance checks, scores and the scaling report, on the real
logs of the harness's own 1-rank and 2-rank mini runs (slow: they train) and
doctored copies, and on small hand-made logs."""
import csv
import json
import shutil

import numpy as np
import pytest

from mlperf_hpc.compliance import check_path
from core.runlog import read_run_log
from tests.helpers import cli, doctor

TAB_COLOURS = ((31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40))   # matplotlib's C0-C3


def _png_contents(path) -> tuple[dict, dict]:
    """(the PNG's Description text chunk, pixels of each of TAB_COLOURS)."""
    from PIL import Image

    image = Image.open(path)
    pixels = np.asarray(image.convert("RGB")).reshape(-1, 3).astype(int)
    counts = {c: int((np.abs(pixels - c).sum(axis=1) < 12).sum()) for c in TAB_COLOURS}
    return json.loads(image.info["Description"]), counts


@pytest.fixture(scope="module")
def real_logs(main_job, two_rank_run):
    one = main_job[2][0]
    two = two_rank_run[1]
    assert two_rank_run[0].returncode == 0
    return one, two


def _rows(result):
    return [ln for ln in result.stdout.splitlines() if ln.startswith(("PASS", "FAIL"))]


@pytest.mark.slow
@pytest.mark.mpi
def test_clean_runs_pass_and_are_scored(real_logs, tmp_path):
    runs = tmp_path / "runs"
    runs.mkdir()
    for i in range(3):  # three runs with distinct seeds and the same hyperparameters
        doctor(real_logs[0], runs / f"result_{i}.txt", "seed", '"value": 1,', f'"value": {100 + i},')
    result = cli("check", str(runs))
    assert result.returncode == 0, result.stdout
    assert len(_rows(result)) == 3 and all(r.startswith("PASS") for r in _rows(result))
    report = check_path(runs)
    ttt = read_run_log(real_logs[0]).time_to_train_s / 60
    (score,) = report.scores
    assert score.runs == 3 and score.time_to_train_min == pytest.approx(ttt)  # olympic mean of equal runs


@pytest.mark.slow
@pytest.mark.mpi
def test_each_doctored_failure_is_named(real_logs, tmp_path):
    runs = tmp_path / "runs"
    runs.mkdir()
    one = real_logs[0]
    shutil.copy(one, runs / "a_clean.txt")
    no_key = runs / "b_missing_key.txt"
    no_key.write_text("".join(ln + "\n" for ln in one.read_text().splitlines() if '"key": "opt_name"' not in ln))
    doctor(one, runs / "c_other_batch.txt", "global_batch_size", '"value": 16', '"value": 32')
    slow = doctor(one, runs / "d_never_converged.txt", "eval_error", '"value": 0.', '"value": 9.')
    doctor(slow, slow, "run_stop", '"status": "success"', '"status": "aborted"')
    result = cli("check", str(runs), "--json")
    assert result.returncode == 1
    verdicts = {v["path"].rsplit("/", 1)[1]: v for v in json.loads(result.stdout)["logs"]}
    assert not verdicts["b_missing_key.txt"]["passed"] and "opt_name" in verdicts["b_missing_key.txt"]["reason"]
    assert "seed 1 also used by a_clean.txt" in verdicts["c_other_batch.txt"]["reason"]
    assert "global_batch_size" in verdicts["c_other_batch.txt"]["reason"]
    never = verdicts["d_never_converged.txt"]["reason"]
    assert "eval_error" in never and "status is 'aborted'" in never


@pytest.mark.slow
@pytest.mark.mpi
def test_submission_tree_needs_ten_cosmoflow_runs(real_logs, tmp_path):
    bench = tmp_path / "org" / "results" / "local-cpu" / "strong" / "cosmoflow"
    bench.mkdir(parents=True)
    for i in range(2):
        doctor(real_logs[0], bench / f"result_{i}.txt", "seed", '"value": 1,', f'"value": {i + 10},')
    report = check_path(tmp_path / "org")
    assert not report.passed
    assert all("cosmoflow strong needs 10 runs, found 2" in v.reason for v in report.verdicts)
    assert report.package and not report.package[0][1]  # the official package checker ran, and failed


@pytest.mark.slow
@pytest.mark.mpi
def test_weak_scaling_score(real_logs, tmp_path):
    weak = tmp_path / "org" / "results" / "sys" / "weak" / "cosmoflow"
    weak.mkdir(parents=True)
    for i in range(10):                      # the official weak-scaling minimum for CosmoFlow
        doctor(real_logs[i % 2], weak / f"result_{i}.txt", "seed", '"value": ', f'"value": {i + 5}')
    (score,) = check_path(tmp_path / "org").scores
    runs = [read_run_log(p) for p in real_logs]
    expected = (max(r.run_stop_ms for r in runs) - min(r.run_start_ms for r in runs)) / 60000
    assert score.scaling == "weak" and score.number_of_models == 10 and score.instance_scale == 1
    assert score.time_to_train_all_min == pytest.approx(expected)


@pytest.mark.slow
@pytest.mark.mpi
def test_report_numbers_match_the_log_timestamps(real_logs, tmp_path):
    out = tmp_path / "report"
    result = cli("report", *map(str, real_logs), "--out", str(out))
    assert result.returncode == 0, result.stderr[-2000:]
    rows = list(csv.DictReader(open(out / "report.csv")))
    assert [r["processes"] for r in rows] == ["1", "2"] and [r["layout"] for r in rows] == ["single", "data"]
    for row, log in zip(rows, real_logs):
        records = [json.loads(ln.split(":::MLLOG", 1)[1]) for ln in log.read_text().splitlines()]
        starts = {r["metadata"]["epoch_num"]: r["time_ms"] for r in records if r["key"] == "epoch_start"}
        stops = {r["metadata"]["epoch_num"]: r["time_ms"] for r in records if r["key"] == "epoch_stop"}
        n_train = next(r["value"] for r in records if r["key"] == "train_samples")
        by_hand = n_train * len(stops) / (sum(stops[e] - starts[e] for e in stops) / 1e3)
        assert float(row["samples_per_s"]) == pytest.approx(by_hand, rel=1e-9)
        assert int(row["epochs"]) == len(stops)
    assert float(rows[1]["speedup"]) == pytest.approx(float(rows[1]["samples_per_s"]) / float(rows[0]["samples_per_s"]))
    assert float(rows[1]["efficiency"]) == pytest.approx(float(rows[1]["speedup"]) / 2)
    # What each plot shows: its axes and series (the PNG's text chunk), and
    # the series really drawn, counted by their colours in the pixels.
    layouts = sorted({r["layout"] for r in rows})
    for name, ylabel, series in (("throughput", "training samples/s", [*layouts, "ideal"]),
                                 ("efficiency", "parallel efficiency [%]", [*layouts, "ideal"]),
                                 ("breakdown", "seconds", ["init (untimed)", "staging", "train", "eval", "other"])):
        shown, colours = _png_contents(out / f"{name}.png")
        assert shown["ylabel"] == ylabel and shown["series"] == series, shown
        assert shown["xlabel"] == ("processes" if name != "breakdown" else "")
        if name != "breakdown":      # one colour per layout, in matplotlib's cycle, and no more
            assert [colours[c] > 100 for c in TAB_COLOURS] == [i < len(layouts) for i in range(len(TAB_COLOURS))]
        else:                        # training and evaluation time of every run are drawn
            assert colours[TAB_COLOURS[2]] > 100 and colours[TAB_COLOURS[3]] > 100
    page = (out / "report.html").read_text()
    assert page.count("data:image/png;base64,") == 3 and "<td>data</td>" in page
    assert "| single | 1 | 1 | 2 | 16 |" in (out / "report.md").read_text()      # 2 threads, global batch 16
    assert [r["threads"] for r in rows] == ["2", "1"]


def test_report_refuses_an_empty_directory(tmp_path):
    result = cli("report", str(tmp_path), "--out", str(tmp_path / "r"))
    assert result.returncode == 2 and "no MLPerf logs found" in result.stderr


def _log_with(path, epochs, train_s, eval_s, threads=2):
    """A minimal log: epochs of the given training and evaluation seconds."""
    t, records = 1_700_000_000_000, []

    def add(key, metadata=None, value=None):
        records.append({"namespace": "", "time_ms": t, "event_type": "POINT_IN_TIME", "key": key, "value": value,
                        "metadata": metadata or {}})

    add("submission_benchmark", value="cosmoflow")
    add("threads_per_process", value=threads)
    add("number_of_ranks", value=1)
    add("train_samples", value=64)
    add("run_start")
    for epoch in range(1, epochs + 1):
        add("epoch_start", {"epoch_num": epoch})
        t += int(train_s * 1000)
        add("epoch_stop", {"epoch_num": epoch})
        add("eval_start", {"epoch_num": epoch})
        t += int(eval_s * 1000)
        add("eval_stop", {"epoch_num": epoch})
    add("run_stop", {"status": "success"})
    path.write_text("".join(":::MLLOG " + json.dumps(r) + "\n" for r in records))
    return path


def test_report_shows_the_eval_share_and_warns_above_a_fifth(tmp_path):
    fair = _log_with(tmp_path / "fair.log", 3, train_s=10, eval_s=1)
    slow = _log_with(tmp_path / "slow.log", 3, train_s=10, eval_s=4)
    result = cli("report", str(fair), str(slow), "--out", str(tmp_path / "r"))
    assert result.returncode == 0, result.stderr[-2000:]
    text = (tmp_path / "r" / "report.md").read_text()
    assert "| 10% |" in text and "| 40% |" in text
    warnings = [ln for ln in text.splitlines() if ln.startswith("Warning:")]
    assert len(warnings) == 1 and "slow.log spent 40% of its training time evaluating" in warnings[0]
    assert "slow.log spent 40%" in (tmp_path / "r" / "report.html").read_text()
