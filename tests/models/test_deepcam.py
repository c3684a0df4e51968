"""DeepCAM on one process: data format and reader, synthetic data, model,
loss, metric, optimizers, schedule, bad input, and a mini run to the target."""
from __future__ import annotations

import math
import os

import h5py
import numpy as np
import pytest
import tensorflow as tf

from deepcam import data
from core import staging
from deepcam.benchmark import DeepCAM, learning_rate_at
from deepcam.objective import CLASS_WEIGHTS, iou_per_sample
from deepcam.optimizers import AdamFamily
from deepcam.synth import CHANNELS, generate, synth_sample
from core.errors import HarnessError
from tests.helpers import REPO, cli, log_records

MINI = REPO / "deepcam" / "configs" / "mini.yaml"


def write_dataset(root, n_train=4, n_valid=2, shape=(32, 48, 3), seed=0):
    """Random fields and labels in the reference layout, with known stats."""
    rng = np.random.default_rng(seed)
    for split, n in (("train", n_train), ("validation", n_valid)):
        (root / split).mkdir(parents=True)
        for i in range(n):
            data.write_sample(root / split / f"s{i:03d}.h5", rng.normal(5, 3, shape), rng.integers(0, 3, shape[:2]))
    minval, maxval = np.array([-10.0, 0.0, 2.0]), np.array([20.0, 10.0, 4.0])
    data.write_stats(root / data.STATS_FILE, minval, maxval)
    return minval, maxval


def test_reader_round_trip_then_the_step_normalises_with_stats_h5(tmp_path):
    minval, maxval = write_dataset(tmp_path)
    files = data.list_files(tmp_path, "train", 4)
    pipeline = data.make_pipeline(files, [32, 48, 3], batch_size=2, training=False, shuffle=False,
                                  prefetch=1, n_parallel_reads=2, seed=0)
    fields, labels = zip(*[(x.numpy(), y.numpy()) for x, y in pipeline.dataset.take(pipeline.steps)])
    fields, labels = np.concatenate(fields), np.concatenate(labels)
    for i, path in enumerate(files):
        with h5py.File(path) as f:
            raw, truth = f["climate/data"][...], f["climate/labels_0"][...]
        np.testing.assert_array_equal(fields[i], raw)          # the host only reads
        np.testing.assert_array_equal(labels[i], truth)
    assert pipeline.steps == 2 and fields.dtype == np.float32 and labels.dtype == np.int32
    config = DeepCAM().load_config(MINI, {"data.data_dir": str(tmp_path), "data.sample_shape": [32, 48, 3]})
    normalised = DeepCAM().normalise(config, tf.constant(fields)).numpy()
    np.testing.assert_allclose(normalised, (fields.astype(np.float64) - minval) / (maxval - minval),
                               rtol=1e-6, atol=1e-6)


def test_samples_stored_in_other_types_read_into_the_batch_converted_or_refused(tmp_path):
    # Each batch is read straight into float32/int32 arrays: HDF5 converts
    # float64 fields and uint8 or int64 labels as it reads; float labels
    # and a field of the wrong shape are one line naming the file.
    rng = np.random.default_rng(3)
    (tmp_path / "train").mkdir()
    fields = rng.normal(0, 1e3, (3, 8, 12, 2))
    labels = rng.integers(0, 3, (3, 8, 12))
    for i, label_type in enumerate((np.uint8, np.int64, np.int16)):
        with h5py.File(tmp_path / "train" / f"s{i}.h5", "w") as f:
            f.create_dataset("climate/data", data=fields[i])                  # float64
            f.create_dataset("climate/labels_0", data=labels[i].astype(label_type))
    files = data.list_files(tmp_path, "train", 3)
    pipeline = data.make_pipeline(files, [8, 12, 2], batch_size=3, training=False, shuffle=False,
                                  prefetch=1, n_parallel_reads=1, seed=0)
    x, y = next(iter(pipeline.dataset))
    np.testing.assert_array_equal(x.numpy(), fields.astype(np.float32))
    np.testing.assert_array_equal(y.numpy(), labels)
    with h5py.File(files[1], "a") as f:
        del f["climate/labels_0"]
        f.create_dataset("climate/labels_0", data=labels[1].astype(np.float32))
    with pytest.raises(HarnessError, match=r"s1.h5: climate/labels_0 holds float32 values, not integer classes"):
        data.read_sample(files[1], [8, 12, 2])
    with pytest.raises(HarnessError, match=r"s0.h5: climate/data has shape \[8, 12, 2\], expected \[8, 12, 3\]"):
        data.read_sample(files[0], [8, 12, 3])


def test_shards_are_contiguous_blocks_covering_every_file_once():
    files = [f"f{i}" for i in range(10)]
    shards = [staging.shard(files, 3, i, "contiguous") for i in range(3)]
    assert sum(shards, []) == files
    assert [len(s) for s in shards] == [3, 4, 3]


def test_training_pipeline_shuffles_per_epoch_and_sees_every_sample(tmp_path):
    write_dataset(tmp_path, n_train=8)
    files = data.list_files(tmp_path, "train", 8)
    pipeline = data.make_pipeline(files, [32, 48, 3], batch_size=1, training=True,
                                  shuffle=True, prefetch=1, n_parallel_reads=1, seed=5)
    batches = iter(pipeline.dataset)
    epochs = [[float(next(batches)[0].numpy().sum()) for _ in range(8)] for _ in range(2)]
    assert sorted(epochs[0]) == pytest.approx(sorted(epochs[1]))
    assert epochs[0] != epochs[1]


def test_replicas_stage_their_blocks_and_read_the_staged_copies(tmp_path):
    write_dataset(tmp_path / "shared", n_train=4, n_valid=2)
    benchmark = DeepCAM()
    config = benchmark.load_config(MINI, {"data.data_dir": str(tmp_path / "shared"), "data.sample_shape": [32, 48, 3],
                                          "data.n_train": 4, "data.n_valid": 2, "data.batch_size": 1,
                                          "data.stage_dir": str(tmp_path / "local")})
    benchmark.stage(config, shard_index=1, n_shards=2)
    staged = sorted(f"{p.parent.name}/{p.name}" for p in (tmp_path / "local").rglob("*.h5"))
    # Replica 1 of 2 holds the second block of each split.
    assert staged == ["train/s002.h5", "train/s003.h5", "validation/s001.h5"]
    original = data.read_sample(str(tmp_path / "shared" / "validation" / "s001.h5"), [32, 48, 3])[0]
    with h5py.File(tmp_path / "shared" / "validation" / "s001.h5", "a") as f:
        f["climate/data"][...] = 0.0
    pipelines = benchmark.pipelines(config, shard_index=1, n_shards=2, seed=0)
    assert pipelines.train.steps == 2 and pipelines.valid.steps == 1
    # The pipeline reads the staged copy, not the (since changed) shared file.
    fields, _ = next(iter(pipelines.valid.dataset))
    np.testing.assert_array_equal(fields[0], original)


def test_raw_staging_reads_back_the_reference_samples(tmp_path):
    write_dataset(tmp_path / "shared", n_train=4, n_valid=2)
    benchmark = DeepCAM()
    config = benchmark.load_config(MINI, {"data.data_dir": str(tmp_path / "shared"), "data.sample_shape": [32, 48, 3],
                                          "data.n_train": 4, "data.n_valid": 2, "data.batch_size": 2,
                                          "data.shuffle": False, "data.stage_dir": str(tmp_path / "local"),
                                          "data.stage_format": "raw"})
    benchmark.stage(config, shard_index=0, n_shards=1)
    staged = benchmark.local_files(config, "train", 0, 1)
    assert all(p.endswith(".h5.raw") for p in staged)
    assert os.path.getsize(staged[0]) == 32 * 48 * (3 * 4 + 4)      # float32 fields, int32 labels
    pipelines = benchmark.pipelines(config, shard_index=0, n_shards=1, seed=0)
    for pipe, split in ((pipelines.train, "train"), (pipelines.valid, "validation")):
        fields, labels = zip(*[(a.numpy(), b.numpy()) for a, b in pipe.dataset.take(pipe.steps)])
        sources = data.list_files(tmp_path / "shared", split, len(pipe.files))
        for i, path in enumerate(sources):
            with h5py.File(path) as f:
                np.testing.assert_array_equal(np.concatenate(fields)[i], f["climate/data"][...])
                np.testing.assert_array_equal(np.concatenate(labels)[i], f["climate/labels_0"][...])
    # A bad label is refused as the sample is staged, in one line.
    with h5py.File(tmp_path / "shared" / "train" / "s000.h5", "a") as f:
        f["climate/labels_0"][0, 0] = 7
    with pytest.raises(HarnessError, match="label value 7 outside"):
        benchmark.stage(config, shard_index=0, n_shards=1)


def test_synthetic_labels_mark_what_the_fields_show():
    rng = np.random.default_rng(4)
    fields, labels = map(np.stack, zip(*[synth_sample(rng, 96, 144) for _ in range(8)]))
    assert fields.shape == (8, 96, 144, len(CHANNELS)) and labels.shape == (8, 96, 144)
    fractions = np.bincount(labels.ravel(), minlength=3) / labels.size
    # Mostly background, as the real data.
    assert fractions[0] > 0.85 and 0.002 < fractions[1] < 0.05 and 0.005 < fractions[2] < 0.1
    prect, tmq = fields[..., CHANNELS.index("PRECT")], fields[..., CHANNELS.index("TMQ")]
    # Cyclones rain, rivers carry water vapour: far above the background.
    assert prect[labels == 1].mean() > prect[labels == 0].mean() + 3 * prect[labels == 0].std()
    assert tmq[labels == 2].mean() > tmq[labels == 0].mean() + 2 * tmq[labels == 0].std()


def test_generator_writes_the_reference_layout_deterministically(tmp_path):
    for name in ("a", "b"):
        generate(tmp_path / name, 32, 48, n_train=3, n_valid=2, seed=9, progress=False, workers=1)
    with h5py.File(tmp_path / "a" / "train" / "data-train-000001.h5") as f:
        assert f["climate/data"].shape == (32, 48, 16) and f["climate/data"].dtype == np.float32
        assert f["climate/labels_0"].shape == (32, 48)
        first = f["climate/data"][...]
    with h5py.File(tmp_path / "b" / "train" / "data-train-000001.h5") as f:
        np.testing.assert_array_equal(first, f["climate/data"][...])
    minval, maxval = data.read_stats(tmp_path / "a", 16)
    # The stats are the training set's extremes.
    train = [data.read_sample(str(p), [32, 48, 16])[0] for p in sorted((tmp_path / "a" / "train").glob("*.h5"))]
    np.testing.assert_allclose(minval, np.min(train, axis=(0, 1, 2)))
    np.testing.assert_allclose(maxval, np.max(train, axis=(0, 1, 2)))


def test_synth_command_writes_samples_and_stats_and_refuses_a_bad_shape(tmp_path):
    result = cli("data", "synth", "deepcam", "--out", str(tmp_path / "d"), "--shape", "32x48", "--n-train", "3",
                 "--n-valid", "2")
    assert result.returncode == 0, result.stderr[-2000:]
    assert len(list((tmp_path / "d" / "train").glob("*.h5"))) == 3
    assert len(list((tmp_path / "d" / "validation").glob("*.h5"))) == 2
    assert data.read_stats(tmp_path / "d", 16)[0].shape == (16,)
    assert_one_error_line(cli("data", "synth", "deepcam", "--out", str(tmp_path / "e"), "--shape", "30x48"),
                          "--shape 30x48", "multiples of 16")


@pytest.mark.slow
def test_model_output_shape_at_mini_and_full_size():
    benchmark = DeepCAM()
    mini = benchmark.load_config(MINI, {})
    model = benchmark.build_model(mini)
    logits = model(np.zeros([2, 96, 144, 16], np.float32), training=False)
    assert logits.shape == (2, 96, 144, 3)
    full = benchmark.load_config(REPO / "deepcam" / "configs" / "deepcam.yaml", {})
    model = benchmark.build_model(full)
    logits = model(np.zeros([1, 768, 1152, 16], np.float32), training=False)
    assert logits.shape == (1, 768, 1152, 3)


@pytest.mark.slow
def test_the_full_model_is_the_reference_layer_for_layer():
    from core.model_summary import forward_flops, layer_table, trainable_parameters

    benchmark = DeepCAM()
    model = benchmark.build_model(benchmark.load_config(REPO / "deepcam" / "configs" / "deepcam.yaml", {}))
    # The reference (mlcommons/hpc deeplab_xception.py) in PyTorch: 56,454,720
    # trainable parameters, 97,836 buffers (running mean and variance of its
    # 76 batch norms, and 76 batch counters Keras does not keep), 655.3 GFLOP.
    assert trainable_parameters(model) == 56_454_720
    norms = [layer for layer in model.layers if isinstance(layer, tf.keras.layers.BatchNormalization)]
    assert len(norms) == 76
    assert sum(int(np.prod(w.shape)) for w in model.non_trainable_weights) == 97_836 - 76
    assert forward_flops(model) == pytest.approx(655.3e9, rel=1e-4)
    shapes = {row.name: row.output_shape for row in layer_table(model)}
    assert shapes["entry_block1_sep2_pw"] == (384, 576, 128)          # the block convolves before it strides
    assert shapes["entry_block1_sep3_pw"] == (192, 288, 128)          # /4: the low-level features
    assert shapes["middle_block16_sep3_pw"] == (48, 72, 728)
    assert shapes["exit_block_sep2_pw"] == shapes["exit_block_sep3_pw"] == (48, 72, 1024)
    assert shapes["exit_sep3_pw"] == (48, 72, 2048) and shapes["aspp_project"] == (48, 72, 256)
    assert shapes["decoder_low"] == (192, 288, 48) and shapes["decoder_conv1"] == (192, 288, 256)
    assert shapes["logits"] == (768, 1152, 3)
    biased = sorted(layer.name for layer in model.layers if getattr(layer, "use_bias", False))
    assert biased == ["decoder_conv3"]                                # the only convolution with a bias


@pytest.mark.parametrize("height, width", [(6, 9), (12, 18), (24, 36), (48, 72)])
def test_atrous_layers_equal_keras_dilated_convolutions_at_every_map_size(height, width):
    # Keras' own dilated convolution over the map padded by the rate (the
    # layer the model used before) is the reference, forward and backward.
    from deepcam.model import AtrousConv2D, overreaches

    rng = np.random.default_rng(height)
    x = tf.constant(rng.normal(size=(2, height, width, 8)), tf.float32)
    for rate in (1, 6, 12, 18):
        layer = AtrousConv2D(5, rate)
        reference = tf.keras.layers.Conv2D(5, 3, dilation_rate=rate, use_bias=False)
        reference.build([None, height + 2 * rate, width + 2 * rate, 8])
        layer.build(x.shape)
        layer.kernel.assign(reference.kernel)
        with tf.GradientTape(persistent=True) as tape:
            tape.watch(x)
            ours = layer(x)
            theirs = reference(tf.pad(x, [[0, 0], [rate, rate], [rate, rate], [0, 0]]))
            weights = tf.constant(rng.normal(size=theirs.shape), tf.float32)
            loss_ours, loss_theirs = tf.reduce_sum(ours * weights), tf.reduce_sum(theirs * weights)
        assert ours.shape == theirs.shape == (2, height, width, 5)
        scale = float(tf.reduce_max(tf.abs(theirs)))
        assert float(tf.reduce_max(tf.abs(ours - theirs))) <= 1e-5 * scale, rate
        for a, b in ((tape.gradient(loss_ours, x), tape.gradient(loss_theirs, x)),
                     (tape.gradient(loss_ours, layer.kernel), tape.gradient(loss_theirs, reference.kernel))):
            assert float(tf.reduce_max(tf.abs(a - b))) <= 1e-5 * float(tf.reduce_max(tf.abs(b))), rate
    # The sizes cover every case: both axes reduced, one, and neither.
    reductions = {(overreaches(r, height), overreaches(r, width)) for r in (1, 6, 12, 18)}
    assert reductions <= {(True, True), (True, False), (False, False)}
    if (height, width) == (6, 9):
        assert reductions == {(True, True), (True, False), (False, False)}


def test_model_command_prints_parameters_flops_and_layers():
    result = cli("model", "deepcam")
    assert result.returncode == 0, result.stderr[-2000:]
    lines = result.stdout.splitlines()
    assert lines[0].startswith("trainable_parameters ") and int(lines[0].split()[1]) > 100_000
    assert lines[1].startswith("forward_gflop_per_sample ") and float(lines[1].split()[1]) > 0
    assert lines[2].split()[:3] == ["layer", "kind", "output"] and any(ln.startswith("logits ") for ln in lines)


def test_iou_counts_a_class_absent_from_both_as_one():
    labels = np.zeros([2, 4, 4], np.int32)
    labels[0, :2, :2] = 1                 # sample 0: 4 cyclone pixels
    predicted = np.zeros_like(labels)
    predicted[0, :2, :1] = 1              # 2 of them found
    predicted[1, 0, 0] = 2                # sample 1: one false river pixel
    scores = iou_per_sample(tf.constant(labels), tf.constant(predicted)).numpy()
    # Sample 0: background 12/14, cyclone 2/4, river absent (1).
    assert scores[0] == pytest.approx((12 / 14 + 0.5 + 1) / 3)
    # Sample 1: background 15/16, cyclone absent (1), river 0/1.
    assert scores[1] == pytest.approx((15 / 16 + 1 + 0) / 3)


def test_loss_weights_pixels_by_class_and_averages_over_pixels():
    benchmark = DeepCAM()
    labels = tf.constant([[[0, 1, 2]]])
    logits = tf.zeros([1, 1, 3, 3])
    expected = math.log(3) * sum(CLASS_WEIGHTS) / 3
    assert float(benchmark.loss(labels, logits)) == pytest.approx(expected, rel=1e-6)


def test_schedule_warms_up_then_decays_at_milestones_after_warmup():
    lr = lambda step: learning_rate_at(step, 0.01, 10, 1.0, "multistep", [20, 40], 0.1, 0, 0.0)  # noqa: E731
    assert lr(0) == pytest.approx(0.001) and lr(9) == pytest.approx(0.01)
    assert lr(29) == pytest.approx(0.01) and lr(30) == pytest.approx(0.001) and lr(50) == pytest.approx(1e-4)
    cosine = lambda step: learning_rate_at(step, 0.01, 0, 2.0, "cosine_annealing", [], 0, 100, 0.0)  # noqa: E731
    assert cosine(0) == pytest.approx(0.02) and cosine(50) == pytest.approx(0.01) and cosine(100) == pytest.approx(0)


@pytest.mark.parametrize("kind", ["AdamW", "LAMB"])
def test_optimizers_follow_the_reference_update(kind):
    rng = np.random.default_rng(1)
    w0, grads = rng.normal(size=[3, 4]).astype(np.float32), rng.normal(size=[2, 3, 4]).astype(np.float32) * 0.1
    variable = tf.Variable(w0)
    optimizer = AdamFamily(kind, 0.01, (0.9, 0.999), 1e-6, 0.01, max_grad_norm=1e9)
    for g in grads:
        optimizer.apply_gradients([(tf.constant(g), variable)])
    # The PyTorch / apex formulas, written out.
    w, m, v = w0.astype(np.float64), 0.0, 0.0
    for t, g in enumerate(grads, 1):
        m, v = 0.9 * m + 0.1 * g, 0.999 * v + 0.001 * g * g
        step = (m / (1 - 0.9 ** t)) / (np.sqrt(v / (1 - 0.999 ** t)) + 1e-6) + 0.01 * w
        ratio = np.linalg.norm(w) / np.linalg.norm(step) if kind == "LAMB" else 1.0
        w = w - 0.01 * ratio * step
    np.testing.assert_allclose(variable.numpy(), w, rtol=1e-5, atol=1e-6)


def _lamb_reference(w0, grads, max_grad_norm):
    """apex's FusedLAMB written out: the global gradient norm clipped to
    ``max_grad_norm`` (None: no clipping), then the LAMB step."""
    w, m, v = w0.astype(np.float64), 0.0, 0.0
    for t, g in enumerate(grads, 1):
        norm = np.linalg.norm(g)
        if max_grad_norm is not None and norm > max_grad_norm:
            g = g * max_grad_norm / norm
        m, v = 0.9 * m + 0.1 * g, 0.999 * v + 0.001 * g * g
        step = (m / (1 - 0.9 ** t)) / (np.sqrt(v / (1 - 0.999 ** t)) + 1e-6)
        w = w - 0.1 * np.linalg.norm(w) / np.linalg.norm(step) * step
    return w


def test_lamb_clips_the_global_gradient_norm():
    # A first Adam-family step does not depend on the gradient's scale; the
    # second does, once a large first gradient is clipped and a small
    # second one is not: clipped, the two weigh alike in the moments.
    w0 = np.array([1.0, 2.0, -1.0], np.float32)
    grads = [np.array([30.0, 40.0, 0.0], np.float32), np.array([0.0, -0.3, 0.4], np.float32)]
    variable = tf.Variable(w0)
    optimizer = AdamFamily("LAMB", 0.1, (0.9, 0.999), 1e-6, 0.0, max_grad_norm=1.0)
    for g in grads:
        optimizer.apply_gradients([(tf.constant(g), variable)])
    clipped, unclipped = _lamb_reference(w0, grads, 1.0), _lamb_reference(w0, grads, None)
    assert np.abs(clipped - unclipped).max() > 0.02          # the test can tell the two apart
    np.testing.assert_allclose(variable.numpy(), clipped, rtol=1e-5, atol=1e-6)


# --- bad input, through the real CLI ---------------------------------------------

def bad_dataset(root):
    write_dataset(root, n_train=4, n_valid=2, shape=(32, 48, 3))
    return ["train", "deepcam", "--data", str(root), "--epochs", "1", "--log", str(root / "run.log"),
            "--set", "data.sample_shape=[32, 48, 3]", "--set", "data.n_train=4", "--set", "data.n_valid=2",
            "--set", "data.batch_size=2"]


def assert_one_error_line(result, *fragments):
    assert result.returncode == 2, result.stderr[-2000:]
    lines = [ln for ln in result.stderr.splitlines() if ln.startswith("mlperf-hpc: error:")]
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr[-2000:]
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


@pytest.mark.slow
def test_a_file_without_labels_is_one_clear_error(tmp_path):
    args = bad_dataset(tmp_path)
    with h5py.File(tmp_path / "train" / "s002.h5", "a") as f:
        del f["climate/labels_0"]
    result = cli(*args)
    assert_one_error_line(result, "s002.h5", "climate/labels_0")
    # The log was kept, and records the abort.
    assert log_records(tmp_path / "run.log")[-1]["metadata"]["status"] == "aborted"


@pytest.mark.slow
def test_stats_with_the_wrong_channel_count_is_one_clear_error(tmp_path):
    args = bad_dataset(tmp_path)
    data.write_stats(tmp_path / data.STATS_FILE, np.zeros(16), np.ones(16))
    assert_one_error_line(cli(*args), "stats.h5", "[16]", "3 channels")


@pytest.mark.slow
def test_a_label_outside_the_classes_is_one_clear_error(tmp_path):
    args = bad_dataset(tmp_path)
    with h5py.File(tmp_path / "validation" / "s001.h5", "a") as f:
        f["climate/labels_0"][3, 4] = 7
    assert_one_error_line(cli(*args), "s001.h5", "label value 7", "0..2")


def test_a_split_that_does_not_divide_the_field_is_refused_before_training(tmp_path):
    # As the first of 5 ranks mpirun started: the refusal comes before MPI starts.
    result = cli("train", "deepcam", "--layout", "spatial", "--spatial", "1x5", "--data", str(tmp_path),
                 env={"OMPI_COMM_WORLD_SIZE": "5", "OMPI_COMM_WORLD_RANK": "0"})
    assert_one_error_line(result, "split 5 does not divide the width 144", "choose a split")


# --- the mini run --------------------------------------------------------------

@pytest.mark.slow
def test_mini_run_reaches_the_target_and_passes_the_checker(deepcam_mini_data, tmp_path):
    log = tmp_path / "deepcam.log"
    result = cli("train", "deepcam", "--config", str(MINI), "--data", str(deepcam_mini_data), "--seed", "2",
                 "--log", str(log), timeout=1200)
    assert result.returncode == 0, result.stderr[-3000:]
    accuracies = [r["value"] for r in log_records(log) if r["key"] == "eval_accuracy"]
    assert accuracies[-1] >= 0.82 and all(a < 0.82 for a in accuracies[:-1])
    check = cli("check", str(log))
    assert check.returncode == 0 and "PASS     deepcam    open" in check.stdout, check.stdout


def test_synth_refuses_an_out_directory_holding_stats_h5(tmp_path):
    stats = tmp_path / "stats.h5"
    stats.write_bytes(b"the real dataset's statistics")
    result = cli("data", "synth", "deepcam", "--out", str(tmp_path), "--n-train", "2", "--n-valid", "1",
                 "--shape", "32x48")
    assert_one_error_line(result, "--out", "stats.h5", "would be replaced")
    assert stats.read_bytes() == b"the real dataset's statistics" and not (tmp_path / "train").exists()
