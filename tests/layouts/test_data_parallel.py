"""Horovod data parallelism on real MPI ranks under mpirun."""
import json
import math
import os
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from cosmoflow import data
from mlperf_hpc.compliance import check_log
from tests.helpers import MPI_ENV, PYTHON, REPO, cli, log_records, mpirun, mpirun_python, read_weights, write_config

pytestmark = [pytest.mark.slow, pytest.mark.mpi]


def test_two_ranks_equal_one_process_with_twice_the_batch(tmp_path, tiny_data):
    # 4 steps of SGD+momentum on the same 32 samples, no shuffling, no dropout.
    config = write_config(tmp_path / "c.yaml", tiny_data,
                          data={"n_train": 32, "n_valid": 32, "shuffle": False, "n_epochs": 1},
                          model={"dropout": 0.0}, train={"seed": 5, "target": 0.0})
    single = cli("train", "cosmoflow", "--config", str(config), "--batch-size", "8", "--layout", "single",
                 "--save-weights", str(tmp_path / "single.h5"), "--log", str(tmp_path / "single.log"))
    assert single.returncode == 3, single.stderr[-2000:]  # ran its epoch, target (0.0) not reached
    ranks = mpirun(2, "train", "cosmoflow", "--config", str(config), "--batch-size", "4", "--layout", "data",
                   "--save-weights", str(tmp_path / "ranks.h5"), "--log", str(tmp_path / "ranks.log"))
    assert ranks.returncode == 3, ranks.stderr[-2000:]
    # The same single process with half the batch (different samples per
    # step) shows the comparison is sharp enough to see a wrong reduction.
    half = cli("train", "cosmoflow", "--config", str(config), "--batch-size", "4", "--layout", "single",
               "--save-weights", str(tmp_path / "half.h5"), "--log", str(tmp_path / "half.log"))
    assert half.returncode == 3, half.stderr[-2000:]
    a, b, c = (read_weights(tmp_path / f"{name}.h5") for name in ("single", "ranks", "half"))
    assert a.keys() == b.keys() and len(a) >= 14

    def relative(x, y):
        flat_x = np.concatenate([x[k].ravel() for k in sorted(x)])
        flat_y = np.concatenate([y[k].ravel() for k in sorted(y)])
        return np.linalg.norm(flat_x - flat_y) / np.linalg.norm(flat_x)

    assert relative(a, b) <= 1e-5
    assert relative(a, c) > 1e-3
    for key in a:  # per variable: far closer than a run on other samples
        assert np.linalg.norm(a[key] - b[key]) <= 1e-2 * np.linalg.norm(a[key] - c[key]), key
    # Both logged the same global batch and learning rate.
    for log in ("single.log", "ranks.log"):
        records = {r["key"]: r["value"] for r in log_records(tmp_path / log)}
        assert records["global_batch_size"] == 8
        assert records["opt_base_learning_rate"] == pytest.approx(0.01 * math.sqrt(8 / 16))  # mini: sqrt scaling


def test_each_sample_of_an_epoch_is_seen_by_exactly_one_rank(tmp_path, tiny_data):
    config = write_config(tmp_path / "c.yaml", tiny_data, data={"n_train": 64, "n_valid": 32, "batch_size": 4})
    out = tmp_path / "seen.json"
    result = mpirun_python(4, str(REPO / "tests" / "mpi_epoch_samples.py"), str(config), str(out), timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(out.read_text())
    assert report["ranks"] == 4 and report["steps"] == 4
    def key(target):  # a sample's identity: its float32 targets
        return tuple(np.asarray(target, np.float32).tolist())

    per_rank = [{key(t) for t in rank} for rank in report["seen"]]
    assert all(len(s) == 16 for s in per_rank)
    assert not any(per_rank[i] & per_rank[j] for i in range(4) for j in range(i + 1, 4))
    everything = set()
    for path in data.list_files(tiny_data, "train", "tfrecord", 64, 1):
        everything |= {key(t) for t in data.read_file(path, "tfrecord", "GZIP")[1]}
    assert set().union(*per_rank) == everything


def test_two_rank_mini_run_reaches_target_and_passes_the_checker(two_rank_run):
    result, log = two_rank_run
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    verdict = check_log(log)
    assert verdict.passed, verdict.reason
    records = {r["key"]: r["value"] for r in log_records(log)}
    assert records["number_of_ranks"] == 2 and records["number_of_nodes"] == 1
    assert records["global_batch_size"] == 16 and records["accelerators_per_node"] == 0
    assert records["parallel_layout"] == "data"
    assert result.stdout.count("reached target") == 1  # only rank 0 reports


def test_failure_on_one_rank_stops_the_job_and_the_log_records_the_abort(tmp_path, tiny_data):
    import shutil
    bad = shutil.copytree(tiny_data, tmp_path / "bad")
    victim = sorted((bad / "train").glob("*.tfrecord"))[9]  # odd index: rank 1's shard
    raw = victim.read_bytes()
    victim.write_bytes(raw[:30] + b"\xff" * 64 + raw[94:])
    config = write_config(tmp_path / "c.yaml", bad, data={"n_train": 64, "n_valid": 32, "batch_size": 4,
                                                           "shuffle": False, "n_epochs": 3})
    log = tmp_path / "run.log"
    start = time.monotonic()
    result = mpirun(2, "train", "cosmoflow", "--config", str(config), "--layout", "data", "--log", str(log),
                    timeout=120)
    elapsed = time.monotonic() - start
    assert result.returncode != 0
    assert elapsed < 60, f"job took {elapsed:.0f}s to stop"
    assert f"corrupt tfrecord file {victim}" in result.stderr
    assert "Traceback" not in result.stderr  # rank 0 stops cleanly, whether by Horovod or by mpirun
    last = log_records(log)[-1]
    assert last["key"] == "run_stop" and last["metadata"]["status"] == "aborted"


def test_four_ranks_oversubscribed_train_and_log_the_real_topology(tmp_path, tiny_data):
    config = write_config(tmp_path / "c.yaml", tiny_data, data={"n_train": 64, "n_valid": 32, "n_epochs": 1,
                                                                 "batch_size": 4}, train={"target": 5.0})
    log = tmp_path / "four.log"
    result = mpirun(4, "train", "cosmoflow", "--config", str(config), "--layout", "data", "--log", str(log))
    assert result.returncode == 0, result.stderr[-3000:]
    records = {r["key"]: r["value"] for r in log_records(log)}
    assert records["number_of_ranks"] == 4 and records["global_batch_size"] == 16
    assert records["opt_base_learning_rate"] == pytest.approx(0.01)  # global batch 16 = the mini base batch
    assert result.stdout.count("reached target") == 1


def test_single_process_accepts_the_data_layout(tmp_path, tiny_data):
    config = write_config(tmp_path / "c.yaml", tiny_data, data={"n_train": 32, "n_valid": 32, "n_epochs": 1},
                          train={"target": 5.0})  # reached by any first epoch
    result = cli("train", "cosmoflow", "--config", str(config), "--layout", "data", "--log", str(tmp_path / "l"))
    assert result.returncode == 0, result.stderr[-2000:]
    assert {r["key"]: r["value"] for r in log_records(tmp_path / "l")}["number_of_ranks"] == 1


def _rank_pid(tag: str, rank: int) -> int | None:
    """The pid of the MPI rank whose environment carries ``tag``."""
    for proc in Path("/proc").iterdir():
        try:
            environ = (proc / "environ").read_bytes().split(b"\0")
        except (OSError, ValueError):
            continue
        if f"KILL_TEST_TAG={tag}".encode() in environ and f"OMPI_COMM_WORLD_RANK={rank}".encode() in environ:
            return int(proc.name)
    return None


def test_a_peer_killed_outright_still_leaves_rank_0_a_log_ending_in_run_stop_aborted(tmp_path, tiny_data):
    # Steps of seconds: the kill lands while rank 0 computes or waits in C code.
    config = write_config(tmp_path / "c.yaml", tiny_data, data={"n_train": 64, "n_valid": 32, "batch_size": 32,
                                                                 "n_epochs": 30},
                          model={"conv_size": 64}, train={"target": 0.0})
    log, tag = tmp_path / "run.log", tmp_path.name
    env = {**os.environ, **MPI_ENV, "MLPERF_HPC_THREADS": "1", "PYTHONPATH": str(REPO), "KILL_TEST_TAG": tag}
    job = subprocess.Popen(["mpirun", "-np", "2", "--oversubscribe", "--bind-to", "none", "-x", "MLPERF_HPC_THREADS",
                            "-x", "PYTHONPATH", "-x", "KILL_TEST_TAG", PYTHON, "-m", "mlperf_hpc.cli", "train",
                            "cosmoflow", "--config", str(config), "--layout", "data", "--log", str(log)],
                           cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 240
        while not (log.exists() and '"key": "epoch_start"' in log.read_text()):
            assert job.poll() is None and time.monotonic() < deadline, "training never started"
            time.sleep(0.5)
        time.sleep(3.0)                              # inside the first steps
        os.kill(_rank_pid(tag, 1), signal.SIGKILL)
        killed = time.monotonic()
        job.wait(timeout=60)
    finally:
        if job.poll() is None:
            job.kill()
    assert job.returncode != 0 and time.monotonic() - killed < 30
    last = log_records(log)[-1]
    assert last["key"] == "run_stop" and last["metadata"]["status"] == "aborted", last
    assert check_log(log).status == "aborted"
