"""The worker pool every synthetic-data generator runs its files through."""
from __future__ import annotations

import multiprocessing
import os
import sys
import time
from typing import Any, Callable, Iterator


def run_pool(label: str, worker: Callable[[Any], Any], jobs: list, progress: bool = True,
             workers: int | None = None) -> Iterator[Any]:
    """``worker(job)`` for every job on one process per core, yielding the
    results in job order, with a progress line (files, files/s, ETA) about
    every tenth of the way. Each job writes one file and is seeded by its own
    index, so the output does not depend on the number of workers."""
    workers = workers or len(os.sched_getaffinity(0))
    start = time.monotonic()
    # spawn, not fork: the parent may already hold TensorFlow's threads.
    with multiprocessing.get_context("spawn").Pool(workers) as pool:
        for done, result in enumerate(pool.imap(worker, jobs, chunksize=4), 1):
            if progress and (done % max(1, len(jobs) // 10) == 0 or done == len(jobs)):
                rate = done / max(time.monotonic() - start, 1e-9)
                print(f"synth {label}: {done}/{len(jobs)} files, {rate:.1f} files/s, "
                      f"ETA {(len(jobs) - done) / rate:.0f}s", file=sys.stderr, flush=True)
            yield result
