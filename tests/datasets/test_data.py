"""Reader round-trips on real TFRecord/HDF5 files, sharding, staging, and the
one-line errors for bad data."""
import gzip
import os
import stat
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from cosmoflow import data
from cosmoflow.synth import synth_volume
from core import staging
from core.errors import HarnessError
from cosmoflow.benchmark import CosmoFlow
from cosmoflow.config import CosmoFlowConfig
from tests.helpers import cli, write_config
from tests.helpers import resident_pages


def _samples(n, size=32, seed=0):
    rng = np.random.default_rng(seed)
    targets = rng.uniform(-1, 1, (n, 4)).astype(np.float32)
    return np.stack([synth_volume(t, size, rng) for t in targets]), targets


def _pipeline(files, fmt, **kw):
    args = dict(fmt=fmt, compression="GZIP", sample_shape=[32, 32, 32, 4], batch_size=2, training=False,
                shuffle=False, prefetch=1, n_parallel_reads=1, seed=0, samples_per_file=2)
    args.update(kw)
    return data.make_pipeline(files, **args)


@pytest.mark.parametrize("fmt", ["tfrecord", "hdf5"])
def test_round_trip_through_the_pipeline(tmp_path, fmt):
    volumes, targets = _samples(4)
    paths = []
    for i in range(2):
        path = tmp_path / f"f{i}{data.SUFFIX[fmt]}"
        if fmt == "tfrecord":
            data.write_tfrecord(path, volumes[2 * i:2 * i + 2], targets[2 * i:2 * i + 2])
        else:
            data.write_hdf5(path, volumes[2 * i:2 * i + 2], targets[2 * i:2 * i + 2])
        paths.append(str(path))
    pipe = _pipeline(paths, fmt)
    xs, ys = zip(*[(x.numpy(), y.numpy()) for x, y in pipe.dataset.take(pipe.steps)])
    x, y = np.concatenate(xs), np.concatenate(ys)
    assert pipe.steps == 2
    # The host only reads: raw int16 volumes; the step's first operation
    # normalises them as the pipeline did before (log1p of the float).
    assert x.dtype == np.int16
    np.testing.assert_array_equal(x, volumes)
    np.testing.assert_array_equal(y, targets)
    config = CosmoFlowConfig()
    np.testing.assert_allclose(CosmoFlow().normalise(config, tf.constant(x)).numpy(),
                               np.log1p(volumes.astype(np.float64)), rtol=1e-6)
    config.data.apply_log = False
    per_sample_mean = volumes.astype(np.float64).mean(axis=(1, 2, 3, 4), keepdims=True)
    np.testing.assert_allclose(CosmoFlow().normalise(config, tf.constant(x)).numpy(),
                               volumes / per_sample_mean, rtol=1e-6)


def test_a_cached_training_pipeline_reshuffles_the_same_samples_every_epoch(tiny_data):
    files = data.list_files(tiny_data, "train", "tfrecord", 64, 1)[:16]
    pipe = _pipeline(files, "tfrecord", batch_size=16, training=True, shuffle=True, samples_per_file=1, cache=True)
    batches = iter(pipe.dataset)
    epochs = [next(batches)[1].numpy() for _ in range(3)]
    assert all(sorted(map(tuple, e)) == sorted(map(tuple, epochs[0])) for e in epochs)
    assert not np.array_equal(epochs[0], epochs[1]) and not np.array_equal(epochs[1], epochs[2])


def test_validation_passes_repeat_from_one_iterator_with_a_partial_last_batch(tiny_data):
    files = data.list_files(tiny_data, "validation", "tfrecord", 5, 1)
    pipe = _pipeline(files, "tfrecord", samples_per_file=1)
    batches = iter(pipe.dataset)                      # the driver makes one, for every evaluation
    passes = [[next(batches)[1].numpy() for _ in range(pipe.steps)] for _ in range(2)]
    assert pipe.steps == 3 and [len(b) for b in passes[0]] == [2, 2, 1]
    for first, second in zip(*passes):
        np.testing.assert_array_equal(first, second)


def test_tfrecord_is_gzip_with_reference_features(tmp_path):
    volumes, targets = _samples(1)
    path = tmp_path / "one.tfrecord"
    data.write_tfrecord(path, volumes, targets)
    assert gzip.open(path).read(1)  # really gzip-compressed
    record = next(iter(tf.data.TFRecordDataset(str(path), compression_type="GZIP")))
    features = tf.train.Example.FromString(record.numpy()).features.feature
    assert set(features) == {"x", "y"}
    assert np.frombuffer(features["x"].bytes_list.value[0], np.int16).size == 32 ** 3 * 4
    assert len(features["y"].float_list.value) == 4


def _tensorflow_parse(path):
    """Every record of a GZIP TFRecord file as TensorFlow's own reader and
    protobuf parser see it: (feature name -> values) per record."""
    parsed = []
    for record in tf.data.TFRecordDataset(str(path), compression_type="GZIP"):
        feature = tf.train.Example.FromString(record.numpy()).features.feature
        parsed.append({name: list(getattr(f, f.WhichOneof("kind")).value) for name, f in feature.items()})
    return parsed


def test_gzip_tfrecords_read_as_tensorflow_reads_them(tmp_path):
    # Written by TensorFlow's writer, with features the reader must skip
    # around (before and after x and y); read back by ISA-L and the wire
    # walker, and compared with TensorFlow's reader and parser.
    volumes, targets = _samples(3)
    path = tmp_path / "many.tfrecord"
    with tf.io.TFRecordWriter(str(path), tf.io.TFRecordOptions(compression_type="GZIP")) as writer:
        for i, (volume, target) in enumerate(zip(volumes, targets)):
            writer.write(tf.train.Example(features=tf.train.Features(feature={
                "a_name": tf.train.Feature(bytes_list=tf.train.BytesList(value=[b"sample", str(i).encode()])),
                "x": tf.train.Feature(bytes_list=tf.train.BytesList(value=[volume.astype(np.int16).tobytes()])),
                "y": tf.train.Feature(float_list=tf.train.FloatList(value=target)),
                "z_index": tf.train.Feature(int64_list=tf.train.Int64List(value=[i, -i, 2 ** 40])),
            })).SerializeToString())
    read_volumes, read_targets = data.read_file(str(path), "tfrecord", "GZIP")
    expected = _tensorflow_parse(path)
    assert len(read_volumes) == len(expected) == 3
    for volume, target, record in zip(read_volumes, read_targets, expected):
        np.testing.assert_array_equal(volume, np.frombuffer(record["x"][0], np.int16))
        np.testing.assert_array_equal(target, np.array(record["y"], np.float32))
    pipe = _pipeline([str(path)], "tfrecord", samples_per_file=3, batch_size=3)
    x, y = next(iter(pipe.dataset))
    np.testing.assert_array_equal(x.numpy(), volumes)
    np.testing.assert_array_equal(y.numpy(), targets)


def _gzip_tfrecord_bytes(records):
    """A GZIP TFRecord file's bytes, framed by hand (CRC fields zero: the
    gzip trailer's CRC-32 is the check the reader relies on)."""
    import struct
    return gzip.compress(b"".join(struct.pack("<QI", len(r), 0) + r + b"\0\0\0\0" for r in records))


@pytest.mark.parametrize("damage, reason", [
    (lambda good: good[:len(good) // 2], r"not a whole gzip stream"),
    (lambda good: good[:100] + bytes([good[100] ^ 0xFF]) + good[101:], r"corrupt tfrecord file"),
    (lambda good: b"not gzip at all" * 10, r"not a whole gzip stream"),
    (lambda good: _gzip_tfrecord_bytes([b"\x0a\x05\x0a\x03"]), r"runs past the end"),
    (lambda good: gzip.compress(b"\xff" * 8 + b"\0" * 8), r"runs past the end"),
    (lambda good: _gzip_tfrecord_bytes([tf.train.Example().SerializeToString()]), r"no feature 'x'"),
])
def test_a_damaged_gzip_tfrecord_is_one_line_naming_the_file(tmp_path, damage, reason):
    volumes, targets = _samples(1)
    good = tmp_path / "good.tfrecord"
    data.write_tfrecord(good, volumes, targets)
    bad = tmp_path / "bad.tfrecord"
    bad.write_bytes(damage(good.read_bytes()))
    with pytest.raises(HarnessError, match=rf"corrupt tfrecord file .*bad.tfrecord.*{reason}.*|{reason}") as raised:
        data.check_file(str(bad), "tfrecord", "GZIP", [32, 32, 32, 4])
    assert "bad.tfrecord" in str(raised.value) and "\n" not in str(raised.value)


def test_synthetic_data_is_deterministic_and_driven_by_targets():
    a, _ = _samples(1, seed=5)
    b, _ = _samples(1, seed=5)
    np.testing.assert_array_equal(a, b)
    rng = np.random.default_rng(0)
    low = synth_volume(np.array([-1.0, 0, 0, 0]), 32, rng)
    high = synth_volume(np.array([1.0, 0, 0, 0]), 32, rng)
    assert high.mean() > 3 * low.mean()  # p0 sets the mean density


def test_shards_partition_the_files():
    files = [f"f{i}" for i in range(10)]
    shards = [staging.shard(files, 3, r) for r in range(3)]
    assert sorted(sum(shards, [])) == sorted(files)
    assert not set(shards[0]) & set(shards[1])


def test_training_pipeline_reshuffles_each_epoch_within_the_shard(tiny_data):
    files = data.list_files(tiny_data, "train", "tfrecord", 64, 1)[:8]
    pipe = _pipeline(files, "tfrecord", batch_size=8, training=True, shuffle=True, samples_per_file=1)
    it = iter(pipe.dataset)
    first, second = next(it)[1].numpy(), next(it)[1].numpy()
    assert sorted(map(tuple, first)) == sorted(map(tuple, second))  # same 8 samples...
    assert not np.array_equal(first, second)                         # ...in a new order


def test_staging_copies_files_locally(tiny_data, tmp_path):
    files = data.list_files(tiny_data, "train", "tfrecord", 4, 1)
    staged = staging.stage(files, tmp_path / "local")
    assert [p.split("/")[-1] for p in staged] == [p.split("/")[-1] for p in files]
    assert all(open(a, "rb").read() == open(b, "rb").read() for a, b in zip(files, staged))


def test_a_staged_copy_is_reused_only_while_its_source_is_unchanged(tmp_path):
    source = tmp_path / "data" / "train"
    source.mkdir(parents=True)
    files = [source / f"f{i}.h5" for i in range(2)]
    for f in files:
        f.write_bytes(b"old" * 100)
    (first,) = staging.stage([str(files[0])], tmp_path / "local")
    inode = os.stat(first).st_ino
    assert staging.stage([str(files[0])], tmp_path / "local") == [first] and os.stat(first).st_ino == inode
    # Regenerated with the same size (fixed-size HDF5): staged again.
    files[0].write_bytes(b"new" * 100)
    os.utime(files[0], ns=(os.stat(files[0]).st_atime_ns, os.stat(files[0]).st_mtime_ns + 1_000_000))
    staging.stage([str(files[0])], tmp_path / "local")
    assert open(first, "rb").read() == b"new" * 100
    # A copy without its manifest (or with another file's) is not trusted either.
    os.remove(first + staging.MANIFEST_SUFFIX)
    Path(first).write_bytes(b"bad" * 100)
    staging.stage([str(files[0])], tmp_path / "local")
    assert open(first, "rb").read() == b"new" * 100


@pytest.mark.parametrize("fmt", ["tfrecord", "hdf5"])
def test_raw_staging_reads_back_every_sample_of_the_reference_files(tmp_path, fmt):
    # Written as staged from GZIP TFRecords or HDF5 (two samples per file):
    # the pipeline over the raw copies yields exactly the source's samples.
    volumes, targets = _samples(6)
    (tmp_path / "data" / "train").mkdir(parents=True)
    (tmp_path / "data" / "validation").mkdir()
    for split in ("train", "validation"):
        for i in range(3):
            path = tmp_path / "data" / split / f"f{i}{data.SUFFIX[fmt]}"
            write = data.write_tfrecord if fmt == "tfrecord" else data.write_hdf5
            write(path, volumes[2 * i:2 * i + 2], targets[2 * i:2 * i + 2])
    benchmark = CosmoFlow()
    config = benchmark.load_config(None, {
        "data.data_dir": str(tmp_path / "data"), "data.format": fmt, "data.sample_shape": [32, 32, 32, 4],
        "data.samples_per_file": 2, "data.n_train": 6, "data.n_valid": 6, "data.batch_size": 2,
        "data.shuffle": False, "data.stage_dir": str(tmp_path / "local"), "data.stage_format": "raw"})
    benchmark.stage(config, 0, 1)
    staged = benchmark.local_files(config, "train", 0, 1)
    assert all(p.endswith(".raw") and Path(p).is_file() for p in staged)
    # Fixed-size records: the volume's int16 values then the four targets.
    assert os.path.getsize(staged[0]) == 2 * (32 ** 3 * 4 * 2 + 4 * 4)

    def read_all(config):
        pipelines = benchmark.pipelines(config, 0, 1, seed=0)
        return [[np.concatenate(t) for t in zip(*[(a.numpy(), b.numpy()) for a, b in pipe.dataset.take(pipe.steps)])]
                for pipe in (pipelines.train, pipelines.valid)]

    # Unshuffled, the raw copies yield the samples as written, file by file.
    for x, y in read_all(config):
        np.testing.assert_array_equal(x, volumes)
        np.testing.assert_array_equal(y, targets)
    # Shuffled: every sample once an epoch, in a new order each epoch.
    config.data.shuffle = True
    pipelines = benchmark.pipelines(config, 0, 1, seed=0)
    batches = iter(pipelines.train.dataset)
    epochs = [np.concatenate([next(batches)[1].numpy() for _ in range(pipelines.train.steps)]) for _ in range(2)]
    for epoch in epochs:
        np.testing.assert_array_equal(epoch[np.argsort(epoch[:, 0])], targets[np.argsort(targets[:, 0])])
    assert not np.array_equal(epochs[0], epochs[1])
    # Staged once: the next run reuses the copies; a copy of the other
    # kind sits beside them, never in their place.
    inode = os.stat(staged[0]).st_ino
    benchmark.stage(config, 0, 1)
    assert os.stat(staged[0]).st_ino == inode
    config.data.stage_format = "copy"
    benchmark.stage(config, 0, 1)
    assert benchmark.local_files(config, "train", 0, 1)[0] == staged[0][:-len(".raw")]
    assert os.stat(staged[0]).st_ino == inode
    # A source whose samples are not the configured shape is refused as it
    # is converted, in one line naming the file; no partial copy is left.
    config.data.stage_format, config.data.stage_dir = "raw", str(tmp_path / "other")
    config.data.sample_shape = [32, 32, 16, 4]
    with pytest.raises(HarnessError, match=r"sample in .*f0.* has 131072 int16 values, expected 32x32x16x4"):
        benchmark.stage(config, 0, 1)
    assert not [p for p in (tmp_path / "other").rglob("*") if p.is_file()]


def test_a_truncated_raw_copy_or_raw_without_a_stage_dir_is_one_clear_line(tmp_path, tiny_data):
    path = tmp_path / "f.tfrecord.raw"
    data.write_raw(path, zip(*_samples(1, size=32)), [32, 32, 32, 4])
    path.write_bytes(path.read_bytes()[:-3])
    with pytest.raises(HarnessError, match=r"staged raw file .* not whole records .* remove it"):
        data.check_file(str(path), "raw", None, [32, 32, 32, 4])
    done = cli("train", "cosmoflow", "--data", str(tiny_data), "--set", "data.stage_format=raw",
               "--log", str(tmp_path / "r.log"))
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "data.stage_format raw converts the samples as they are staged, so it needs data.stage_dir" in done.stderr


def test_staged_copies_live_in_directories_only_this_user_can_enter(tmp_path):
    source = tmp_path / "data" / "train" / "f.h5"
    source.parent.mkdir(parents=True)
    source.write_bytes(b"x")
    (copy,) = staging.stage([str(source)], tmp_path / "local")
    for folder in (Path(copy).parent, Path(copy).parent.parent):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    # Planted by someone else (or opened to others): refused, in one line.
    planted = tmp_path / "shared"
    target = staging.staged_path(str(source), planted).parent
    target.mkdir(parents=True)
    os.chmod(target, 0o777)
    with pytest.raises(HarnessError, match=r"stage directory .* is not private to this user"):
        staging.stage([str(source)], planted)
    os.chmod(target, 0o700)
    if os.geteuid() == 0:          # only root can hand a directory to another user
        os.chown(target.parent, 12345, 12345)
        with pytest.raises(HarnessError, match=r"stage directory .* is not private to this user"):
            staging.stage([str(source)], planted)


def test_missing_split_directory(tmp_path):
    with pytest.raises(HarnessError, match=r"data directory .*train not found"):
        data.list_files(tmp_path, "train", "tfrecord", 4, 1)


def test_too_few_files(tiny_data):
    with pytest.raises(HarnessError, match=r"holds 32 tfrecord files .* asks for 100"):
        data.list_files(tiny_data, "validation", "tfrecord", 100, 1)


# --- bad input through the real CLI: one line, no traceback -------------------

def _assert_one_line_error(result, pattern):
    assert result.returncode == 2, result.stderr[-2000:]
    lines = [ln for ln in result.stderr.splitlines() if ln.startswith("mlperf-hpc: error:")]
    assert len(lines) == 1, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    import re
    assert re.search(pattern, lines[0]), lines[0]


def test_cli_missing_data_dir(tmp_path):
    config = write_config(tmp_path / "c.yaml", tmp_path / "nowhere")
    result = cli("train", "cosmoflow", "--config", str(config), "--log", str(tmp_path / "run.log"))
    _assert_one_line_error(result, r"data directory .*nowhere/train not found.*data synth cosmoflow")


def test_cli_unknown_config_key(tmp_path, tiny_data):
    config = write_config(tmp_path / "c.yaml", tiny_data, model={"conv_sise": 8})
    result = cli("train", "cosmoflow", "--config", str(config))
    _assert_one_line_error(result, r"unknown key 'model.conv_sise'")


def _copy_data(src, dst):
    import shutil
    shutil.copytree(src, dst)
    return dst


@pytest.mark.slow
def test_cli_corrupt_tfrecord(tmp_path, tiny_data):
    bad = _copy_data(tiny_data, tmp_path / "bad")
    victim = sorted((bad / "train").glob("*.tfrecord"))[5]
    raw = victim.read_bytes()
    victim.write_bytes(raw[:40] + b"\x00garbage" * 20 + raw[200:])
    config = write_config(tmp_path / "c.yaml", bad, data={"n_train": 64, "n_valid": 32, "batch_size": 8})
    log = tmp_path / "run.log"
    result = cli("train", "cosmoflow", "--config", str(config), "--log", str(log), "--epochs", "1")
    _assert_one_line_error(result, rf"corrupt tfrecord file .*{victim.name}.*regenerate or remove it")
    text = log.read_text()  # the log survives and records the abort
    assert '"key": "run_start"' in text and '"status": "aborted"' in text


@pytest.mark.slow
def test_cli_sample_of_wrong_shape(tmp_path, tiny_data):
    config = write_config(tmp_path / "c.yaml", tiny_data,
                          data={"sample_shape": [64, 64, 64, 4], "n_train": 64, "n_valid": 32})
    result = cli("train", "cosmoflow", "--config", str(config), "--log", str(tmp_path / "run.log"))
    _assert_one_line_error(result, r"has 131072 int16 values, expected 64x64x64x4 = 1048576")


@pytest.mark.slow
@pytest.mark.parametrize("placement, stage_format, order", [
    ("init", "copy", ["init_start", "staging_start", "staging_stop", "init_stop", "run_start", "epoch_start"]),
    ("timed", "copy", ["init_stop", "run_start", "staging_start", "staging_stop", "epoch_start"]),
    ("timed", "raw", ["init_stop", "run_start", "staging_start", "staging_stop", "epoch_start"]),
])
def test_staging_sits_where_the_config_puts_it_and_starts_the_run_on_disk(tmp_path, tiny_data, placement,
                                                                          stage_format, order):
    import json
    config = write_config(tmp_path / "c.yaml", tiny_data, data={"n_train": 32, "n_valid": 32, "n_epochs": 1,
                                                                 "staging": placement, "stage_format": stage_format},
                          train={"target": 5.0})
    stage_dir = tmp_path / "node-local"
    result = cli("train", "cosmoflow", "--config", str(config), "--stage-dir", str(stage_dir),
                 "--log", str(tmp_path / "run.log"))
    assert result.returncode == 0, result.stderr[-2000:]
    # 32 train + 32 validation files, copied or converted (and only that).
    staged = sorted(stage_dir.rglob("*.tfrecord" + (".raw" if stage_format == "raw" else "")))
    copies = [p for p in stage_dir.rglob("*") if p.is_file() and not p.name.endswith(staging.MANIFEST_SUFFIX)]
    assert len(staged) == 64 and len(copies) == 64
    records = [json.loads(ln.split(":::MLLOG", 1)[1]) for ln in (tmp_path / "run.log").read_text().splitlines()]
    keys = [r["key"] for r in records]
    assert [keys.index(k) for k in order] == sorted(keys.index(k) for k in order)
    assert next(r for r in records if r["key"] == "cache_clear")["value"] is True


def test_untimed_staging_needs_the_v3_rules(tmp_path, tiny_data):
    config = write_config(tmp_path / "c.yaml", tiny_data, mlperf={"benchmark_version": "2.0.0"})
    result = cli("train", "cosmoflow", "--config", str(config))
    _assert_one_line_error(result, r"data.staging 'init' \(untimed staging\) needs the hpc 3.0.0 rules")


def test_eviction_empties_the_page_cache_of_the_files_it_is_given(tmp_path, tiny_data):
    files = sorted(str(p) for p in (tiny_data / "train").glob("*.tfrecord"))[:8]
    for path in files:
        with open(path, "rb") as f:
            f.read()
    assert all(resident_pages(f)[0] > 0 for f in files)
    fresh = tmp_path / "written.bin"                 # dirty pages too
    fresh.write_bytes(b"x" * 1_000_000)
    assert staging.evict(files + [str(fresh)]) == []
    assert [resident_pages(f)[0] for f in files + [str(fresh)]] == [0] * 9
    assert staging.evict([str(tmp_path / "missing")]) == [str(tmp_path / "missing")]
