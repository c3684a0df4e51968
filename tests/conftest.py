"""Shared fixtures: real synthetic datasets on disk, and real runs (the main
job, a 2-rank run) that several tests read. Helpers live in tests/helpers.py."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

from core.runtime import configure_environment
from tests.helpers import cli, mpirun

configure_environment()
# The commands under test record runs in a results store: a private one, not
# the checkout's logs/results.sqlite.
os.environ.setdefault("MLPERF_HPC_STORE", os.path.join(tempfile.mkdtemp(prefix="mlperf-hpc-store-"), "store.sqlite"))


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


@pytest.fixture(scope="session")
def deepcam_mini_data(tmp_path_factory) -> Path:
    """The mini DeepCAM dataset: 96x144x16, 512 train / 128 validation samples."""
    from deepcam.synth import generate

    return generate(tmp_path_factory.mktemp("deepcam") / "mini", 96, 144, 512, 128, seed=0, progress=False)
