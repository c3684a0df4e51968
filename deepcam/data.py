"""DeepCAM data: the reference on-disk layout and the input pipeline.

One HDF5 file per sample under ``train/`` and ``validation/``:
``climate/data`` float32 [H, W, C] (768 x 1152 x 16 at full size) and
``climate/labels_0`` integer [H, W] with 0 background, 1 tropical cyclone,
2 atmospheric river. ``stats.h5`` beside the split directories holds
``climate/minval`` and ``climate/maxval`` per channel; samples are min-max
normalised with them, ``(x - minval) / (maxval - minval)``, as the first
operation of the training step (``DeepCAM.normalise``).

As in the reference, the sorted file list is cut to the sample count and
split into contiguous blocks, one per data-parallel replica (so a replica
can stage exactly its files); each replica shuffles its block every epoch.

Raw (a staged copy only, ``data.stage_format: raw``): one file per sample,
one record (``raw_layout``: the fields' float32 values, then the labels'
int32 values), read straight into the batch (``core.raw_records``) with no
HDF5 library in the way.
"""
from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import tensorflow as tf

from core import raw_records
from core.benchmark import RAW_SUFFIX, SplitPipeline
from core.errors import HarnessError
from deepcam.facts import STATS_FILE
from deepcam.objective import N_CLASSES

DATA_KEY, LABELS_KEY = "climate/data", "climate/labels_0"
MIN_KEY, MAX_KEY = "climate/minval", "climate/maxval"


# --- writing -----------------------------------------------------------------

def write_sample(path: Path, fields: np.ndarray, labels: np.ndarray) -> None:
    with h5py.File(path, "w") as f:
        f.create_dataset(DATA_KEY, data=fields.astype(np.float32))
        f.create_dataset(LABELS_KEY, data=labels.astype(np.int32))


def raw_layout(sample_shape: list[int]) -> raw_records.RecordLayout:
    return raw_records.RecordLayout((("float32", tuple(sample_shape)), ("int32", tuple(sample_shape[:2]))))


def write_raw(path: Path, fields: np.ndarray, labels: np.ndarray) -> None:
    with open(path, "wb") as f:
        raw_layout(list(fields.shape)).write(f, fields, labels)


def write_stats(path: Path, minval: np.ndarray, maxval: np.ndarray) -> None:
    with h5py.File(path, "w") as f:
        f.create_dataset(MIN_KEY, data=minval.astype(np.float32))
        f.create_dataset(MAX_KEY, data=maxval.astype(np.float32))


# --- reading and validation ----------------------------------------------------

def read_stats(data_dir: str | Path, n_channels: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel (minval, maxval) from ``stats.h5``, checked against the
    configured channel count."""
    path = Path(data_dir) / STATS_FILE
    if not path.is_file():
        raise HarnessError(f"{path} not found: DeepCAM needs the dataset's stats.h5 (climate/minval, "
                           f"climate/maxval) beside train/ and validation/")
    try:
        with h5py.File(path, "r") as f:
            minval, maxval = f[MIN_KEY][...].astype(np.float32), f[MAX_KEY][...].astype(np.float32)
    except (OSError, KeyError) as err:
        raise HarnessError(f"{path} is unreadable or lacks {MIN_KEY}/{MAX_KEY} ({err}): "
                           f"regenerate it") from None
    for name, values in (("minval", minval), ("maxval", maxval)):
        if values.shape != (n_channels,):
            raise HarnessError(f"{path}: climate/{name} has shape {list(values.shape)} but the samples have "
                               f"{n_channels} channels: use the stats file of this dataset or fix "
                               f"data.sample_shape")
    if np.any(maxval <= minval):
        channel = int(np.argmax(maxval <= minval))
        raise HarnessError(f"{path}: channel {channel} has maxval <= minval, so it cannot be normalised: "
                           f"regenerate the stats")
    return minval, maxval


def read_sample(path: str, sample_shape: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """One sample's fields [H, W, C] float32 and labels [H, W] int32; raises a
    one-line HarnessError naming the file and the problem."""
    fields, labels = raw_layout(sample_shape).empty(1)
    read_sample_into(path, sample_shape, [fields, labels], 0)
    return fields[0], labels[0]


def read_sample_into(path: str, sample_shape: list[int], arrays: list[np.ndarray], row: int) -> None:
    """One sample (HDF5, or a staged raw copy) into row ``row`` of a batch's
    (fields, labels) arrays, checked as ``read_sample`` checks it."""
    if path.endswith(RAW_SUFFIX):
        _read_raw_into(path, sample_shape, arrays, row)
    else:
        _read_hdf5_into(path, sample_shape, arrays, row)
    labels = arrays[1][row]
    low, high = labels.min(), labels.max()
    if low < 0 or high >= N_CLASSES:
        raise HarnessError(f"{path}: label value {low if low < 0 else high} outside 0..{N_CLASSES - 1} (background, "
                           f"tropical cyclone, atmospheric river): fix or remove the file")


def _read_raw_into(path: str, sample_shape: list[int], arrays: list[np.ndarray], row: int) -> None:
    layout = raw_layout(sample_shape)
    records = layout.records_in(path)
    if records != 1:
        raise HarnessError(f"staged raw file {path} holds {records} samples, not one: remove it, "
                           f"and staging writes it again")
    layout.read_into(path, 0, arrays, row)


def _read_hdf5_into(path: str, sample_shape: list[int], arrays: list[np.ndarray], row: int) -> None:
    """h5py's ``read_direct`` into the rows: HDF5 converts the stored types
    as it reads, and nothing is allocated per sample."""
    try:
        with h5py.File(path, "r") as f:
            for key in (LABELS_KEY, DATA_KEY):
                if key not in f:
                    needs = "every sample needs its labels; " if key == LABELS_KEY else ""
                    raise HarnessError(f"{path} has no '{key}' dataset: {needs}regenerate or remove the file")
            fields, labels = f[DATA_KEY], f[LABELS_KEY]
            if list(fields.shape) != list(sample_shape):
                raise HarnessError(f"{path}: {DATA_KEY} has shape {list(fields.shape)}, expected "
                                   f"{list(sample_shape)}: fix data.sample_shape or regenerate the data")
            if list(labels.shape) != list(sample_shape[:2]):
                raise HarnessError(f"{path}: {LABELS_KEY} has shape {list(labels.shape)}, expected "
                                   f"{list(sample_shape[:2])}")
            if not np.issubdtype(labels.dtype, np.integer):
                raise HarnessError(f"{path}: {LABELS_KEY} holds {labels.dtype} values, not integer classes "
                                   f"0..{N_CLASSES - 1}: fix or remove the file")
            fields.read_direct(arrays[0], dest_sel=np.s_[row])
            labels.read_direct(arrays[1], dest_sel=np.s_[row])
    except (OSError, TypeError) as err:         # TypeError: a stored type HDF5 cannot convert
        reason = str(err).strip().splitlines()[0][:160]
        raise HarnessError(f"corrupt HDF5 file {path} ({reason}): regenerate or remove it") from None


def list_files(data_dir: str | Path, split: str, n_samples: int) -> list[str]:
    """Sorted sample files of one split, cut to the configured count."""
    directory = Path(data_dir) / split
    if not directory.is_dir():
        raise HarnessError(f"data directory {directory} not found: generate data with "
                           f"'mlperf-hpc data synth deepcam --out {data_dir}' or pass --data DIR")
    files = sorted(str(p) for p in directory.glob("*.h5"))
    if len(files) < n_samples:
        raise HarnessError(f"{directory} holds {len(files)} samples but the config asks for {n_samples}: "
                           f"lower data.n_{'train' if split == 'train' else 'valid'} or generate more data")
    return files[:n_samples]


# --- the pipeline --------------------------------------------------------------

def make_pipeline(files: list[str], sample_shape: list[int], batch_size: int, training: bool, shuffle: bool, prefetch: int, n_parallel_reads: int,
                  seed: int, steps: int | None = None, cache: bool = False) -> SplitPipeline:
    """Dataset of (fields as stored [B, H, W, C], labels [B, H, W]); their
    min-max scaling is the training step's (``DeepCAM.normalise``).
    Training: shuffled per epoch, repeated, ``steps`` full batches an epoch
    (every replica runs the same count). Validation: the same pass repeated,
    its last batch partial; read ``steps`` batches per evaluation. With
    ``cache`` the samples stay in memory after the first epoch
    reads them (and are shuffled sample by sample)."""
    height, width, channels = sample_shape
    if not cache or all(f.endswith(RAW_SUFFIX) for f in files):
        # Each batch read straight into its arrays; staged raw copies (read
        # anew every epoch: they cost no decoding) are read so with or
        # without the cache.
        ds, epoch_steps = raw_records.read_batches(
            files, lambda path, arrays, row: read_sample_into(path, sample_shape, arrays, row),
            raw_layout(sample_shape), batch_size, training, shuffle, seed, prefetch, n_parallel_reads)
        return SplitPipeline(ds, files, steps if training and steps is not None else epoch_steps)

    def read(path):
        fields, labels = tf.numpy_function(lambda p: read_sample(p.decode(), sample_shape), [path],
                                           [tf.float32, tf.int32], stateful=False)
        fields.set_shape([height, width, channels])
        labels.set_shape([height, width])
        return fields, labels

    # Cached: samples read one by one, kept after the first pass, shuffled in memory.
    ds = tf.data.Dataset.from_tensor_slices(files).map(read, num_parallel_calls=n_parallel_reads, deterministic=True)
    ds = ds.cache()
    if training and shuffle:
        ds = ds.shuffle(len(files), seed=seed, reshuffle_each_iteration=True)
    if training:
        ds = ds.repeat().batch(batch_size, drop_remainder=True)
        steps = steps if steps is not None else len(files) // batch_size
    else:
        ds = ds.batch(batch_size).repeat()     # one iterator for every evaluation
        steps = -(-len(files) // batch_size)
    return SplitPipeline(ds.prefetch(prefetch), files, steps)
