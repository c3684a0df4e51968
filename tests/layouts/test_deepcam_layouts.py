"""DeepCAM under real MPI ranks: the Mesh TF split model against the Keras
model, a data-parallel mini run to the target, and a spatial run."""
from __future__ import annotations

import json

import numpy as np
import pytest

from deepcam.benchmark import DeepCAM
from tests.helpers import REPO, cli, log_records, mpirun, mpirun_python, read_weights

pytestmark = [pytest.mark.slow, pytest.mark.mpi]

BOUND = 1e-5


@pytest.mark.parametrize("split, field", [
    ("2x1", "64x96"),       # ASPP halos deeper than the 2-row blocks
    ("1x2", "64x48"),       # blocks of 3 columns gathered before the last halving
    ("8x1", "48x96"),       # gathered before the second: the low-level features are whole too
])
def test_split_model_equals_the_unsplit_model_including_atrous_layers(split, field, tmp_path):
    out = tmp_path / "equivalence.json"
    processes = int(split[0]) * int(split[2])
    result = mpirun_python(processes, str(REPO / "tests" / "mpi_deepcam_mesh_equivalence.py"), split, str(out),
                           field, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    r = json.loads(out.read_text())
    assert r["processes"] == processes and max(r["dilations"]) == 6
    mesh, keras = r["mesh"], r["keras"]
    # As exact as the unsplit float32 model (itself ~1e-5 from float64 on
    # this 60-layer network) and within 1e-5 of float64 where Keras is.
    for key in ("logits", "loss", "all_gradients"):
        assert mesh[key] <= max(BOUND, 2 * keras[key]), (key, mesh[key], keras[key])
    # Per weight, against the largest gradient: some batch-norm parameters'
    # gradients are zero in exact arithmetic (the next batch norm cancels
    # them) and float32 noise of ~1e-10 in both models.
    largest = max(r["gradient_norms"].values())
    for name, error in mesh["gradient_errors"].items():
        assert error <= max(BOUND * largest, 2 * keras["gradient_errors"][name]), name
    assert len(r["gradient_norms"]) > 100
    assert r["halo_copies_kept"] == 0             # the backward pass rebuilds halo-extended blocks
    assert r["halo_reads"] > 0
    # One LAMB step moves the weights as Keras' does; its two slots are
    # shared out (plus each rank's step count), none kept whole on every rank.
    assert r["update"] <= 1e-3, r["update"]
    shares, slots = r["optimizer_floats"], 2 * r["trainable_floats"]
    assert sum(shares) == slots + processes and max(shares) <= 1.05 * slots / processes, shares


def test_two_rank_data_parallel_mini_run_passes_the_checker(deepcam_mini_data, tmp_path):
    log = tmp_path / "dp.log"
    result = mpirun(2, "train", "deepcam", "--layout", "data", "--batch-size", "4", "--seed", "3",
                    "--data", str(deepcam_mini_data), "--log", str(log), timeout=1200)
    assert result.returncode == 0, result.stderr[-3000:]
    records = {r["key"]: r for r in log_records(log)}
    assert records["number_of_ranks"]["value"] == 2 and records["global_batch_size"]["value"] == 8
    assert records["batchnorm_group_size"]["value"] == 1
    check = cli("check", str(log))
    assert check.returncode == 0 and "PASS     deepcam    open" in check.stdout, check.stdout


def test_spatial_run_trains_split_samples_and_saves_whole_keras_weights(deepcam_mini_data, tmp_path):
    log, weights = tmp_path / "spatial.log", tmp_path / "weights.h5"
    result = mpirun(2, "train", "deepcam", "--layout", "spatial", "--spatial", "2x1", "--epochs", "1",
                    "--set", "data.n_train=64", "--set", "data.n_valid=20", "--seed", "4",
                    "--data", str(deepcam_mini_data), "--log", str(log), "--save-weights", str(weights), timeout=900)
    assert result.returncode == 3, result.stderr[-3000:]         # one epoch: the target is not reached
    records = log_records(log)
    values = {r["key"]: r["value"] for r in records}
    assert values["parallel_layout"] == "spatial:2x1" and values["batchnorm_group_size"] == 2
    # 20 validation samples in batches of 8: the last, partial batch counts too.
    assert values["eval_samples"] == 20 and 0.0 < values["eval_accuracy"] <= 1.0
    # The saved weights load into the Keras model and have moved from the start.
    benchmark = DeepCAM()
    config = benchmark.load_config(REPO / "deepcam" / "configs" / "mini.yaml", {})
    model = benchmark.build_model(config)
    model.load_weights(str(weights))
    saved = read_weights(weights)
    assert len(saved) == len(model.weights)
    moving = [k for k in saved if k.endswith("moving_mean:0")]
    assert moving and any(np.abs(saved[k]).max() > 0 for k in moving)
