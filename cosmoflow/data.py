"""CosmoFlow data: the reference on-disk formats and the input pipeline.

TFRecord (the reference, v1.0 onward): GZIP-compressed records with features
``x`` (bytes: raw int16 volume, D x H x W x C) and ``y`` (float32[4], the
target parameters), read a file at a time by ``cosmoflow.gzip_records``
(ISA-L's inflate, and no copy of a record before the one into its array);
uncompressed TFRecords go through TensorFlow's reader, which checks their
CRC-32C sums. HDF5 variant: datasets ``x`` [n, D, H, W, C] int16 and
``y`` [n, 4] float32 per file. Files live under ``train/`` and
``validation/``.

Raw (a staged copy only, ``data.stage_format: raw``): one file per source
file, its samples as fixed-size records (``raw_layout``: the volume's int16
values, then the four float32 targets), read straight into the batch
(``core.raw_records``) with no decompression and no parsing.

The pipeline follows the reference: the sorted file list is cut to the
sample count and split into a fixed shard per data-parallel replica (so each
replica can stage exactly its files to node-local storage, and every sample of
an epoch is seen by exactly one replica), shuffled per epoch within the shard,
parsed, repeated, batched and prefetched. The volumes stay int16: the
``log(x + 1)`` normalisation is the first operation of the training step
(``CosmoFlow.normalise``), on the device that trains.
"""
from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import tensorflow as tf

from core import raw_records
from core.benchmark import SplitPipeline
from core.errors import HarnessError
from cosmoflow import gzip_records

SUFFIX = {"tfrecord": ".tfrecord", "hdf5": ".h5"}
N_TARGETS = 4


def raw_layout(sample_shape: list[int]) -> raw_records.RecordLayout:
    return raw_records.RecordLayout((("int16", tuple(sample_shape)), ("float32", (N_TARGETS,))))


# --- writing -----------------------------------------------------------------

def write_tfrecord(path: Path, volumes: np.ndarray, targets: np.ndarray, compression: str | None = "GZIP") -> None:
    """Write samples (int16 volumes, float32 targets) as reference TFRecords."""
    options = tf.io.TFRecordOptions(compression_type=compression or "")
    with tf.io.TFRecordWriter(str(path), options) as writer:
        for volume, target in zip(volumes, targets):
            example = tf.train.Example(features=tf.train.Features(feature={
                "x": tf.train.Feature(bytes_list=tf.train.BytesList(value=[volume.astype(np.int16).tobytes()])),
                "y": tf.train.Feature(float_list=tf.train.FloatList(value=target.astype(np.float32))),
            }))
            writer.write(example.SerializeToString())


def write_hdf5(path: Path, volumes: np.ndarray, targets: np.ndarray) -> None:
    with h5py.File(path, "w") as f:
        f.create_dataset("x", data=volumes.astype(np.int16), compression="gzip", compression_opts=1)
        f.create_dataset("y", data=targets.astype(np.float32))


def write_raw(path: Path, samples, sample_shape: list[int]) -> None:
    """(volume, target) samples as raw records (see the module docstring)."""
    layout = raw_layout(sample_shape)
    with open(path, "wb") as f:
        for volume, target in samples:
            layout.write(f, volume, target)


def convert_to_raw(src: str, dst: Path, fmt: str, compression: str | None, sample_shape: list[int]) -> None:
    """Stage ``src`` as raw records; a bad file is one line."""
    try:
        write_raw(dst, zip(*read_file(src, fmt, compression)), sample_shape)
    except (tf.errors.OpError, OSError, KeyError, ValueError):
        check_file(src, fmt, compression, sample_shape)        # names what is wrong, if it can
        raise HarnessError(f"corrupt {fmt} file {src}: regenerate or remove it") from None


# --- file lists and validation --------------------------------------------------

def list_files(data_dir: str | Path, split: str, fmt: str, n_samples: int, samples_per_file: int) -> list[str]:
    """Sorted files of one split, cut to the configured sample count."""
    if fmt not in SUFFIX:
        raise HarnessError(f"unknown data format '{fmt}': use one of {', '.join(SUFFIX)}")
    directory = Path(data_dir) / split
    if not directory.is_dir():
        raise HarnessError(f"data directory {directory} not found: generate data with "
                           f"'mlperf-hpc data synth cosmoflow --out {data_dir}' or pass --data DIR")
    files = sorted(str(p) for p in directory.glob(f"*{SUFFIX[fmt]}"))
    n_files = n_samples // samples_per_file
    if len(files) < n_files:
        raise HarnessError(f"{directory} holds {len(files)} {fmt} files ({len(files) * samples_per_file} samples) "
                           f"but the config asks for {n_samples}: lower data.n_{'train' if split == 'train' else 'valid'} "
                           f"or generate more data")
    return files[:n_files]


def read_file(path: str, fmt: str, compression: str | None) -> tuple[list[np.ndarray], np.ndarray]:
    """All samples of one file as numpy arrays (volumes flat int16, targets)."""
    if fmt == "hdf5":
        with h5py.File(path, "r") as f:
            return list(f["x"][...].reshape(len(f["x"]), -1)), f["y"][...]
    if compression == "GZIP":
        return _read_gzip_tfrecord(path)
    volumes, targets = [], []
    # The plain record iterator: a tf.data pipeline costs ~25 ms to build
    # per file, which staging a dataset of small files pays thousands of times.
    for record in tf.compat.v1.io.tf_record_iterator(path, tf.io.TFRecordOptions(compression_type=compression or "")):
        example = tf.train.Example.FromString(record)
        volumes.append(np.frombuffer(example.features.feature["x"].bytes_list.value[0], np.int16))
        targets.append(np.array(example.features.feature["y"].float_list.value, np.float32))
    return volumes, np.array(targets)


def _read_gzip_tfrecord(path: str) -> tuple[list[np.ndarray], np.ndarray]:
    """A GZIP TFRecord file's volumes (flat int16 views into its inflated
    bytes) and targets; ``ValueError`` naming what is damaged."""
    volumes, targets = [], []
    for record in gzip_records.read_records(path):
        features = gzip_records.example_features(record)
        x = gzip_records.bytes_value(features, "x")
        if len(x) % 2:
            raise ValueError(f"feature 'x' holds {len(x)} bytes, not whole int16 values")
        y = gzip_records.float_values(features, "y")
        if y.size != N_TARGETS:
            raise ValueError(f"a sample has {y.size} targets, expected {N_TARGETS}")
        volumes.append(np.frombuffer(x, "<i2"))
        targets.append(y)
    return volumes, np.array(targets, np.float32).reshape(-1, N_TARGETS)


def check_file(path: str, fmt: str, compression: str | None, sample_shape: list[int]) -> None:
    """Raise a one-line HarnessError if a file is unreadable or holds a sample
    of the wrong shape."""
    if fmt == "raw":
        raw_layout(sample_shape).records_in(path)
        return
    expected = int(np.prod(sample_shape))
    try:
        volumes, targets = read_file(path, fmt, compression)
    except (tf.errors.OpError, OSError, KeyError, ValueError) as err:
        reason = str(err).strip().splitlines()[0][:160]
        raise HarnessError(f"corrupt {fmt} file {path} ({reason}): regenerate or remove it") from None
    for volume, target in zip(volumes, targets):
        if volume.size != expected:
            raise HarnessError(f"sample in {path} has {volume.size} int16 values, expected "
                               f"{'x'.join(map(str, sample_shape))} = {expected}: fix data.sample_shape "
                               f"or regenerate the data")
        if np.shape(target) != (N_TARGETS,):
            raise HarnessError(f"sample in {path} has {np.size(target)} targets, expected {N_TARGETS}")


# --- the pipeline --------------------------------------------------------------

def _parse_tfrecord(record: tf.Tensor, sample_shape: list[int]) -> tuple[tf.Tensor, tf.Tensor]:
    features = tf.io.parse_single_example(record, {
        "x": tf.io.FixedLenFeature([], tf.string),
        "y": tf.io.FixedLenFeature([N_TARGETS], tf.float32),
    })
    volume = tf.reshape(tf.io.decode_raw(features["x"], tf.int16), sample_shape)
    return volume, features["y"]


def _read_hdf5(path: str, samples_per_file: int, sample_shape: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """A file's samples read straight into preallocated arrays."""
    volumes = np.empty([samples_per_file] + sample_shape, np.int16)
    targets = np.empty([samples_per_file, N_TARGETS], np.float32)
    with h5py.File(path, "r") as f:
        f["x"].read_direct(volumes, np.s_[:samples_per_file])
        f["y"].read_direct(targets, np.s_[:samples_per_file])
    return volumes, targets


def _read_samples(path: str, fmt: str, samples_per_file: int, sample_shape: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """A file's samples as [samples_per_file, *sample_shape] int16 and targets."""
    if fmt == "hdf5":
        return _read_hdf5(path, samples_per_file, sample_shape)
    flat, targets = _read_gzip_tfrecord(path)
    if len(flat) != samples_per_file or any(v.size != np.prod(sample_shape) for v in flat):
        raise ValueError(f"{path} does not hold {samples_per_file} samples of {sample_shape}")
    volumes = np.empty([samples_per_file] + sample_shape, np.int16)
    for row, volume in zip(volumes, flat):
        row.reshape(-1)[:] = volume              # the one copy, out of the inflated bytes
    return volumes, targets


def _file_samples(fmt: str, sample_shape: list[int], samples_per_file: int):
    """path -> that file's samples, [samples_per_file, ...], read in one numpy call."""
    def read(path):
        volumes, targets = tf.numpy_function(lambda p: _read_samples(p.decode(), fmt, samples_per_file, sample_shape),
                                             [path], [tf.int16, tf.float32], stateful=False)
        volumes.set_shape([samples_per_file] + sample_shape)
        targets.set_shape([samples_per_file, N_TARGETS])
        return volumes, targets
    return read


def make_pipeline(files: list[str], fmt: str, compression: str | None, sample_shape: list[int],
                  batch_size: int, training: bool, shuffle: bool, prefetch: int,
                  n_parallel_reads: int, seed: int, samples_per_file: int, cache: bool = False) -> SplitPipeline:
    """Dataset of raw (int16 volumes, targets) over this replica's files. Training: shuffled per epoch,
    repeated, full batches only. Validation: the same pass repeated, its last
    batch partial; read ``steps`` batches per evaluation. With ``cache`` the
    decoded int16 volumes are kept in memory after the first epoch reads
    them (and shuffled sample by sample), so later epochs spend no core on
    reading and decompressing."""
    n_samples = len(files) * samples_per_file
    if fmt == "raw":        # shuffled sample by sample; nothing to gain from caching
        ds, steps = raw_records.make_dataset(files, samples_per_file, raw_layout(sample_shape), batch_size,
                                             training, shuffle, seed, prefetch, n_parallel_reads)
        return SplitPipeline(ds, files, steps)
    ds = tf.data.Dataset.from_tensor_slices(files)
    if training and shuffle and not cache:
        ds = ds.shuffle(len(files), seed=seed, reshuffle_each_iteration=True)
    if fmt == "tfrecord" and compression != "GZIP":
        read = lambda path: tf.data.TFRecordDataset(path, compression_type=compression or "")
        ds = ds.interleave(read, cycle_length=n_parallel_reads, num_parallel_calls=tf.data.AUTOTUNE,
                           deterministic=True)
        ds = ds.map(lambda r: _parse_tfrecord(r, sample_shape), num_parallel_calls=tf.data.AUTOTUNE)
    else:
        # A parallel map, then unbatch: reads inside an interleave's dataset
        # function ran one at a time.
        ds = ds.map(_file_samples(fmt, sample_shape, samples_per_file), num_parallel_calls=n_parallel_reads,
                    deterministic=True).unbatch()
    if cache:
        ds = ds.cache()
        if training and shuffle:
            ds = ds.shuffle(n_samples, seed=seed, reshuffle_each_iteration=True)

    if training:
        ds = ds.repeat().batch(batch_size, drop_remainder=True)
        steps = n_samples // batch_size
    else:
        # Repeated passes, the last batch of each partial: one iterator for
        # every evaluation (making one per epoch stalled seconds).
        ds = ds.batch(batch_size).repeat()
        steps = -(-n_samples // batch_size)
    return SplitPipeline(ds.prefetch(prefetch), files, steps)
