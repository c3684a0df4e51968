"""Staged raw records, read straight into the batch.

A benchmark's raw staging format (``data.stage_format: raw``) is a file per
source file holding fixed-size records; a record is the sample's arrays
back to back in a layout the benchmark declares, in the host's byte order
(staged and read on the same node; little-endian on x86-64 and AArch64). The
pipeline here reads each batch's records with ``readinto`` into the batch's
own preallocated arrays: one copy, from the page cache into the batch,
with the GIL released during each read, so reads of several batches run
side by side. (Through ``FixedLengthRecordDataset`` or ``read_file`` a
sample was copied four times: into a buffer, into a string, by
``decode_raw`` and into the batch.) ``read_batches`` serves any source
whose samples read into rows in the same way, such as DeepCAM's HDF5
samples through h5py's ``read_direct``.
"""
from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import tensorflow as tf

from core.errors import HarnessError


@dataclass(frozen=True)
class RecordLayout:
    """The arrays of one record, in file order: (numpy dtype name, shape) each."""
    parts: tuple[tuple[str, tuple[int, ...]], ...]

    @property
    def record_bytes(self) -> int:
        return sum(np.dtype(dtype).itemsize * int(np.prod(shape)) for dtype, shape in self.parts)

    def write(self, f, *arrays: np.ndarray) -> None:
        """Append one record (its arrays in layout order) to the open file ``f``."""
        for (dtype, shape), array in zip(self.parts, arrays):
            array = np.ascontiguousarray(array, dtype)
            if array.size != int(np.prod(shape)):
                raise ValueError(f"a record part of {array.size} values does not fit the raw layout {shape}")
            f.write(array)          # through the buffer protocol: no copy

    def empty(self, n: int) -> list[np.ndarray]:
        """Arrays for ``n`` records, one per part, each [n, *shape]."""
        return [np.empty((n,) + tuple(shape), dtype) for dtype, shape in self.parts]

    def read_into(self, path: str, record: int, arrays: list[np.ndarray], row: int) -> None:
        """Record ``record`` of ``path`` into row ``row`` of ``arrays`` (``empty``'s)."""
        with open(path, "rb", buffering=0) as f:
            f.seek(record * self.record_bytes)
            for array in arrays:
                _read_fully(f, memoryview(array[row]).cast("B"), path)

    def records_in(self, path: str) -> int:
        """How many whole records ``path`` holds; a one-line HarnessError if
        it holds a partial one (a copy cut short)."""
        try:
            size = os.path.getsize(path)
        except OSError as err:
            raise HarnessError(f"staged raw file {path} cannot be read ({err.strerror}): stage again "
                               f"(remove the stage directory's copy and its .staged.json)") from None
        if size == 0 or size % self.record_bytes:
            raise HarnessError(f"staged raw file {path} holds {size} bytes, not whole records of "
                               f"{self.record_bytes}: remove it, and staging writes it again")
        return size // self.record_bytes


def _read_fully(f, view: memoryview, path: str) -> None:
    while view.nbytes:
        n = f.readinto(view)
        if not n:
            raise HarnessError(f"staged raw file {path} ended inside a record: remove it, and staging writes it again")
        view = view[n:]


def make_dataset(files: list[str], records_per_file: int, layout: RecordLayout, batch_size: int, training: bool,
                 shuffle: bool, seed: int, prefetch: int, n_parallel_reads: int) -> tuple[tf.data.Dataset, int]:
    """(dataset of batches, batches per epoch) over every record of the raw
    ``files`` (see ``read_batches``)."""
    items = [(path, k) for path in files for k in range(records_per_file)]
    return read_batches(items, lambda item, arrays, row: layout.read_into(*item, arrays, row), layout, batch_size,
                        training, shuffle, seed, prefetch, n_parallel_reads)


def read_batches(items: Sequence[Any], read_into: Callable[[Any, list[np.ndarray], int], None], layout: RecordLayout,
                 batch_size: int, training: bool, shuffle: bool, seed: int, prefetch: int,
                 n_parallel_reads: int) -> tuple[tf.data.Dataset, int]:
    """(dataset of batches, batches per epoch) over ``items``, each read by
    ``read_into(item, arrays, row)`` into row ``row`` of the batch's arrays
    (``layout.empty``'s). Training: shuffled sample by sample every epoch,
    repeated, full batches only. Validation: the same pass repeated, its
    last batch partial."""
    dtypes = [tf.as_dtype(dtype) for dtype, _ in layout.parts]

    def read_batch(indices: np.ndarray) -> list[np.ndarray]:
        arrays = layout.empty(len(indices))
        for row, i in enumerate(indices):
            read_into(items[i], arrays, row)
        return arrays

    def read(indices: tf.Tensor) -> tuple[tf.Tensor, ...]:
        arrays = tf.numpy_function(read_batch, [indices], dtypes, stateful=False)
        for array, (_, shape) in zip(arrays, layout.parts):
            array.set_shape([None, *shape])
        return tuple(arrays)

    ds = tf.data.Dataset.range(len(items))
    if training:
        if shuffle:
            ds = ds.shuffle(len(items), seed=seed, reshuffle_each_iteration=True)
        ds = ds.repeat().batch(batch_size, drop_remainder=True)
        steps = len(items) // batch_size
    else:
        ds = ds.batch(batch_size).repeat()          # one iterator for every evaluation
        steps = -(-len(items) // batch_size)
    ds = ds.map(read, num_parallel_calls=n_parallel_reads, deterministic=True)
    return ds.prefetch(prefetch), steps
