"""A log write that fails stops the run at once, with one line naming the
log, and leaves no partial line: tested with a real file-size limit
(RLIMIT_FSIZE makes the kernel refuse the write, as a full disk does)."""
from __future__ import annotations

import json
import resource
import subprocess

import pytest

from tests.helpers import PYTHON, REPO, write_config

TOKEN = ":::MLLOG "


def _limit_file_size(n_bytes: int):
    return lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (n_bytes, resource.RLIM_INFINITY))


def _records(path):
    lines = path.read_text().splitlines()
    # Every line whole: a partial one would not parse.
    return [json.loads(line.split(TOKEN, 1)[1]) for line in lines]


@pytest.mark.slow
def test_a_run_whose_log_cannot_be_written_stops_at_once(tmp_path, tiny_data):
    config = write_config(tmp_path / "c.yaml", tiny_data, data={"n_train": 64, "n_valid": 32, "batch_size": 8, "n_epochs": 40},
                          train={"target": 0.001})
    log = tmp_path / "run.log"
    limit = 6000                                # the header and about one epoch
    done = subprocess.run([PYTHON, "-m", "mlperf_hpc.cli", "train", "cosmoflow", "--config", str(config),
                           "--log", str(log)], capture_output=True, text=True, timeout=600, cwd=REPO,
                          preexec_fn=_limit_file_size(limit))
    assert done.returncode == 2, done.stderr[-2000:]
    assert "Traceback" not in done.stderr and "Logging error" not in done.stderr, done.stderr[-2000:]
    errors = [ln for ln in done.stderr.splitlines() if ln.startswith("mlperf-hpc: error:")]
    assert len(errors) == 1 and str(log) in errors[0] and "File too large" in errors[0], done.stderr[-2000:]
    records = _records(log)
    assert log.stat().st_size <= limit
    epochs_logged = sum(r["key"] == "epoch_start" for r in records)
    # Training went no further than the epoch whose record could not be written.
    epochs_run = sum(line.startswith("epoch ") for line in done.stdout.splitlines() + done.stderr.splitlines())
    assert epochs_logged <= 2 and epochs_run <= epochs_logged


SPACE_COMES_BACK = """
import resource, sys
from pathlib import Path
from core.mllogging import LogWriteError, MLPerfLog

path = Path(sys.argv[1])
log = MLPerfLog(path)
log.start("run_start")
size = path.stat().st_size
resource.setrlimit(resource.RLIMIT_FSIZE, (size + 600, resource.RLIM_INFINITY))
try:
    for epoch in range(1, 100):
        log.event("eval_error", 0.5, metadata={"epoch_num": epoch})
    sys.exit("no write failed")
except LogWriteError as err:
    print(err)
log.event("eval_error", 0.1)          # after a failure nothing more is written ...
resource.setrlimit(resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
log.stop_run("success")               # ... but the run is marked aborted once space is back
log.close()
"""


def test_once_space_comes_back_the_log_ends_in_run_stop_aborted(tmp_path):
    path = tmp_path / "run.log"
    done = subprocess.run([PYTHON, "-c", SPACE_COMES_BACK, str(path)], capture_output=True, text=True, cwd=REPO,
                          timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"cannot write the MLPerf log {path} (File too large)" in done.stdout
    assert "Traceback" not in done.stderr and "Logging error" not in done.stderr
    records = _records(path)
    assert [r["key"] for r in records[:2]] == ["run_start", "eval_error"]
    assert records[-1]["key"] == "run_stop" and records[-1]["metadata"]["status"] == "aborted"
    assert all(r["value"] == 0.5 for r in records if r["key"] == "eval_error")
    epochs = [r["metadata"]["epoch_num"] for r in records if r["key"] == "eval_error"]
    assert epochs == list(range(1, len(epochs) + 1))      # no gap: every line up to the failure

