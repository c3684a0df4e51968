"""Spatial and hybrid layouts: Mesh TF over Horovod, with real MPI ranks."""
import json

import numpy as np
import pytest

from mlperf_hpc.compliance import check_log
from tests.helpers import REPO, cli, log_records, mpirun, mpirun_python, read_weights, write_config

pytestmark = [pytest.mark.slow, pytest.mark.mpi]


def test_horovod_mesh_collectives_match_their_definitions(tmp_path):
    out = tmp_path / "checked.json"
    result = mpirun_python(4, str(REPO / "tests" / "mpi_mesh_collectives.py"), str(out), timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads(out.read_text()) == sorted([
        "allreduce_a", "allreduce_ab", "allreduce_max_b", "allconcat_b_axis1", "alltoall_a_split0_concat1",
        "receive_b_from_next", "halo_1", "halo_3", "convolve_1", "convolve_3"])


@pytest.mark.parametrize("split", ["1x1", "2x1", "1x2", "2x2", "4x1", "4x4"])
def test_split_model_outputs_and_gradients_equal_the_keras_model(tmp_path, split):
    # The default mini model. 1x1 runs SAME convolutions on whole samples;
    # at 2x1 the fifth pooling, at 4x1 the fourth, finds blocks of one plane
    # and gathers the axis first.
    depth, height = (int(p) for p in split.split("x"))
    out = tmp_path / "diff.json"
    result = mpirun_python(depth * height, str(REPO / "tests" / "mpi_mesh_equivalence.py"), split, str(out),
                           timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    diff = json.loads(out.read_text())
    assert diff["processes"] == depth * height
    assert diff["gradient_shapes_match"]
    assert len(diff["gradients"]) == 16                   # 5 convs + 3 dense layers, kernel and bias each
    assert diff["outputs"] <= 1e-5
    assert max(diff["gradients"]) <= 1e-5, diff["gradients"]
    # Every layer convolves its block SAME, as a whole sample (training and
    # evaluation pass: 10); the halos' part comes from VALID convolutions of
    # one-plane slabs, and no convolution reads a halo-extended block.
    convolutions = diff["convolutions"]
    assert len(convolutions["SAME"]) == 10
    assert diff["halo_reads"] == 0
    if split == "1x1":
        assert convolutions["VALID"] == []
    else:
        assert convolutions["VALID"] and set(convolutions["VALID"]) == {1}, convolutions
    # Every rank runs the same collectives, those of gradients whose
    # weights another rank updates included, or its peers would wait.
    collectives, allreduce_tensors = diff["step_collectives"][0], diff["allreduce_tensors"][0]
    assert diff["step_collectives"] == [collectives] * diff["processes"]
    # The momentum slots are shared out: whole weights to one rank each, split ones by slice.
    shares, weights = diff["optimizer_floats"], diff["weight_floats"]
    assert sum(shares) == weights and max(shares) <= 1.05 * weights / len(shares), shares
    if split == "1x1":
        # A whole sample needs no collective, nor Horovod's short cycle (it costs compute).
        assert collectives == {}
        assert diff["horovod_cycle_time"] is None
    else:
        # Halos wait on each negotiation cycle; a conv layer's kernel and
        # bias gradients are summed over the blocks in one allreduce.
        assert diff["horovod_cycle_time"] == "0.1"
        assert collectives["alltoall"] >= 1
        assert allreduce_tensors and set(allreduce_tensors) == {2}, allreduce_tensors


def test_hybrid_training_takes_the_same_steps_as_one_process(tmp_path, tiny_data):
    # 2 groups x 2x1 split, batch 4 per group, against one Keras process with
    # batch 8: 4 SGD+momentum steps on the same samples (no shuffle, no
    # dropout). Exercises the whole trainer: input blocks, seeds, the
    # optimizer, learning rate, gradient sums across groups, weight export.
    config = write_config(tmp_path / "c.yaml", tiny_data,
                          data={"n_train": 32, "n_valid": 32, "shuffle": False, "n_epochs": 1},
                          model={"dropout": 0.0, "n_conv_layers": 4}, train={"seed": 5, "target": 0.0})
    runs = {"single": ("--layout", "single", "--batch-size", "8"),
            "hybrid": ("--layout", "hybrid", "--spatial", "2x1", "--batch-size", "4"),
            "half": ("--layout", "single", "--batch-size", "4")}
    for name, args in runs.items():
        command = ("train", "cosmoflow", "--config", str(config), *args, "--log", str(tmp_path / f"{name}.log"),
                   "--save-weights", str(tmp_path / f"{name}.h5"))
        result = mpirun(4, *command) if name == "hybrid" else cli(*command)
        assert result.returncode == 3, result.stderr[-2000:]     # ran its epoch; target 0.0 not reached
    single, hybrid, half = (read_weights(tmp_path / f"{name}.h5") for name in runs)
    assert single.keys() == hybrid.keys() and len(single) == 14

    def flat(weights):
        return np.concatenate([weights[k].ravel() for k in sorted(weights)])

    assert np.linalg.norm(flat(single) - flat(hybrid)) <= 1e-3 * np.linalg.norm(flat(single))
    for key in single:  # per variable: far closer than a run on other samples
        assert np.linalg.norm(single[key] - hybrid[key]) <= 0.1 * np.linalg.norm(single[key] - half[key]), key
    for name in ("single", "hybrid"):
        records = {r["key"]: r["value"] for r in log_records(tmp_path / f"{name}.log")}
        assert records["global_batch_size"] == 8


@pytest.fixture(scope="module")
def hybrid_run(main_job, tmp_path_factory):
    """The README's hybrid example: 4 processes (2 groups x 2x1 split) on the
    default mini config and dataset, the model as it is (its fifth pooling
    finds blocks of one plane and gathers the depth axis first), 8 samples
    per group: the global batch of 16 that the mini config converges with."""
    _, workdir, _ = main_job
    tmp = tmp_path_factory.mktemp("hybrid")
    log = tmp / "hybrid.log"
    result = mpirun(4, "train", "cosmoflow", "--data", str(workdir / "data" / "cosmoflow-mini"), "--layout", "hybrid",
                    "--spatial", "2x1", "--batch-size", "8", "--seed", "3", "--log", str(log),
                    "--save-weights", str(tmp / "w.h5"))
    return result, log, tmp / "w.h5"


def test_hybrid_four_process_run_reaches_target_and_passes_the_checker(hybrid_run):
    result, log, weights = hybrid_run
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    assert "reached target" in result.stdout
    verdict = check_log(log)
    assert verdict.passed, verdict.reason
    text = log.read_text()
    assert '"key": "number_of_ranks", "value": 4' in text
    assert '"key": "parallel_layout", "value": "hybrid:2x1"' in text
    assert '"key": "global_batch_size", "value": 16' in text       # 2 groups x 8


def test_hybrid_run_saves_the_full_keras_weights(hybrid_run):
    import h5py

    result, _, weights = hybrid_run
    assert result.returncode == 0
    with h5py.File(weights) as f:
        shapes = []
        f.visititems(lambda name, node: shapes.append(node.shape) if isinstance(node, h5py.Dataset) else None)
    # fc1's kernel is split across the group until the last pooling; saved whole: 1^3 x 256 channels -> 128
    assert (256, 128) in shapes


@pytest.mark.parametrize("ranks, args, message", [
    (3, ["--layout", "hybrid", "--spatial", "3x1"], "the split 3 does not divide the volume's depth 32"),
    (1, ["--layout", "hybrid", "--spatial", "1x2"],
     "1 processes are not a multiple of the --spatial 1x2 split (2 processes per sample)"),
    (1, ["--layout", "hybrid"], "--layout hybrid needs --spatial AxB"),
    (1, ["--layout", "data", "--spatial", "2x1"], "--spatial '2x1' needs --layout spatial or hybrid"),
    (2, ["--layout", "hybrid", "--spatial", "2x1", "--set", "model.kernel_size=2"],
     "spatial layouts need an odd kernel"),
])
def test_impossible_splits_are_refused_before_training(tmp_path, tiny_data, ranks, args, message):
    # As rank 0 of the ranks mpirun would start: every refusal comes before MPI starts.
    log = tmp_path / "refused.log"
    result = cli("train", "cosmoflow", "--data", str(tiny_data), "--log", str(log), "--set", "data.n_train=64",
                 "--set", "data.n_valid=32", *args,
                 env={"OMPI_COMM_WORLD_SIZE": str(ranks), "OMPI_COMM_WORLD_RANK": "0"})
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.stderr
    assert "Traceback" not in result.stderr
    assert not log.exists() or "epoch_start" not in log.read_text()


def test_spatial_layout_on_more_processes_than_the_split_points_to_hybrid(tmp_path, tiny_data):
    config = write_config(tmp_path / "c.yaml", tiny_data, model={"n_conv_layers": 4})
    result = mpirun(4, "train", "cosmoflow", "--config", str(config), "--layout", "spatial", "--spatial", "2x1",
                    "--log", str(tmp_path / "x.log"), timeout=120)
    assert result.returncode != 0
    assert "--layout spatial --spatial 2x1 runs on exactly 2 processes, not 4: use --layout hybrid" in result.stderr


@pytest.mark.parametrize("benchmark", ["cosmoflow", "deepcam"])
def test_initial_weights_follow_the_keras_initialisers_and_are_rank_zeros(tmp_path, benchmark):
    out = tmp_path / "weights.json"
    result = mpirun_python(2, str(REPO / "tests" / "mpi_initial_weights.py"), benchmark, str(out), timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    r = json.loads(out.read_text())
    assert r["checksums"][0] == r["checksums"][1]                 # rank 0's, though seeded differently
    weights = r["weights"]
    assert [(w["name"], w["shape"]) for w in weights] == [(w["keras_name"], w["keras_shape"]) for w in weights]
    for w in weights:
        if w["keras_std"] == 0:                                    # zeros and ones: exactly the Keras values
            assert w["std"] == 0 and w["mean"] == w["keras_mean"], w["name"]
        elif w["size"] >= 1000:                                    # Glorot uniform: the same spread
            assert w["std"] == pytest.approx(w["keras_std"], rel=0.1), w["name"]
            assert abs(w["mean"]) < 0.2 * w["std"], w["name"]
