"""Shared fixtures: real synthetic datasets on disk, configs, and a way to run
the real CLI (in-process for speed, or as a subprocess / under mpirun)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import yaml

from core.runtime import configure_environment

configure_environment()
# The commands under test record runs in a results store: a private one, not
# the checkout's logs/results.sqlite.
os.environ.setdefault("MLPERF_HPC_STORE", os.path.join(tempfile.mkdtemp(prefix="mlperf-hpc-store-"), "store.sqlite"))

REPO = Path(__file__).resolve().parents[1]
PYTHON = sys.executable
MPI_ENV = {"OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1",
           "OMPI_MCA_rmaps_base_oversubscribe": "1", "PYTHONUNBUFFERED": "1"}


def cli(*args: str, timeout: float = 600, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run ``mlperf-hpc ARGS`` as a real subprocess."""
    return subprocess.run([PYTHON, "-m", "mlperf_hpc.cli", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=REPO, env={**os.environ, **(env or {})})


def mpirun_python(n: int, *argv: str, timeout: float = 900, extra_env: dict | None = None) -> subprocess.CompletedProcess:
    """Run ``python ARGV`` on ``n`` real MPI ranks (one thread each), with the repo importable."""
    env = {**os.environ, **MPI_ENV, "MLPERF_HPC_THREADS": "1", "PYTHONPATH": str(REPO), **(extra_env or {})}
    exports = [x for name in ("MLPERF_HPC_THREADS", "PYTHONUNBUFFERED", "PYTHONPATH", *(extra_env or {}))
               for x in ("-x", name)]
    command = ["mpirun", "-np", str(n), "--oversubscribe", "--bind-to", "none", *exports, PYTHON, *argv]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, cwd=REPO, env=env)


def mpirun(n: int, *args: str, timeout: float = 900, extra_env: dict | None = None) -> subprocess.CompletedProcess:
    """Run ``mlperf-hpc ARGS`` on ``n`` real MPI ranks (one thread each)."""
    return mpirun_python(n, "-m", "mlperf_hpc.cli", *args, timeout=timeout, extra_env=extra_env)


def write_config(path: Path, data_dir: Path, **sections) -> Path:
    """A small CosmoFlow config: the mini config with section overrides."""
    config = yaml.safe_load((REPO / "cosmoflow" / "configs" / "mini.yaml").read_text())
    config["data"]["data_dir"] = str(data_dir)
    for section, values in sections.items():
        config.setdefault(section, {}).update(values)
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory) -> Path:
    """32^3 CosmoFlow TFRecords: 64 train / 32 validation samples."""
    from cosmoflow.synth import generate

    return generate(tmp_path_factory.mktemp("tiny") / "cosmo", 32, 64, 32, seed=3, progress=False)


@pytest.fixture(scope="session")
def main_job(tmp_path_factory):
    """One real ``mlperf-hpc run`` (mini CosmoFlow trained to the closed
    target), shared by the tests that need a converged log."""
    workdir = tmp_path_factory.mktemp("main_job")
    result = cli("run", "--workdir", str(workdir), "--seed", "1", timeout=900)
    logs = sorted((workdir / "logs" / "local").glob("cosmoflow-mini-*.log"))
    return result, workdir, logs


@pytest.fixture(scope="session")
def two_rank_run(main_job, tmp_path_factory):
    """A real 2-rank data-parallel mini CosmoFlow run to the target, on the
    main job's dataset (per-rank batch 8: the same global batch of 16)."""
    _, workdir, _ = main_job
    log = tmp_path_factory.mktemp("two_rank") / "dp.log"
    result = mpirun(2, "train", "cosmoflow", "--layout", "data", "--batch-size", "8", "--seed", "2",
                    "--data", str(workdir / "data" / "cosmoflow-mini"), "--log", str(log))
    return result, log


def log_records(path: Path) -> list[dict]:
    """The MLLOG records of a log file."""
    return [json.loads(line.split(":::MLLOG", 1)[1]) for line in path.read_text().splitlines()
            if ":::MLLOG" in line]


def read_weights(path: Path) -> dict:
    """Every dataset of a Keras HDF5 weights file, by name."""
    import h5py

    out = {}
    with h5py.File(path, "r") as f:
        f.visititems(lambda name, obj: out.__setitem__(name, obj[...]) if isinstance(obj, h5py.Dataset) else None)
    return out


def doctor(src: Path, dst: Path, key: str, old: str, new: str) -> Path:
    """Copy a log, replacing ``old`` by ``new`` in the lines of one key."""
    lines = src.read_text().splitlines()
    dst.write_text("\n".join(ln.replace(old, new) if f'"key": "{key}"' in ln else ln for ln in lines) + "\n")
    return dst


@pytest.fixture(scope="session")
def deepcam_mini_data(tmp_path_factory) -> Path:
    """The mini DeepCAM dataset: 96x144x16, 512 train / 128 validation samples."""
    from deepcam.synth import generate

    return generate(tmp_path_factory.mktemp("deepcam") / "mini", 96, 144, 512, 128, seed=0, progress=False)
