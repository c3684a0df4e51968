"""What a job records about itself before it trains: one provenance line
(the harness commit, Python, TensorFlow, Horovod and MPI), and an optional
allreduce bandwidth test of the interconnect the gradients will cross."""
from __future__ import annotations

import platform
import subprocess
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def harness_commit() -> str:
    try:
        done = subprocess.run(["git", "-C", str(REPO), "describe", "--always", "--dirty", "--abbrev=12"],
                              capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return "unknown (no git)"
    return done.stdout.strip() or "unknown (not a git checkout)"


def harness_version() -> str:
    """The version in the checkout's pyproject.toml (the one place it is written)."""
    import tomllib

    try:
        return tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    except (OSError, KeyError, ValueError):
        return "unknown"


def provenance_line() -> str:
    import horovod
    import horovod.tensorflow as hvd
    import tensorflow as tf
    from mpi4py import MPI

    mpi = MPI.Get_library_version().strip().splitlines()[0]
    gpu_ops = "NCCL" if hvd.nccl_built() else "none"
    cuda = f"CUDA build, {len(tf.config.list_physical_devices('GPU'))} GPU(s) visible" if tf.test.is_built_with_cuda() \
        else "CPU build"
    return (f"provenance: mlperf-hpc {harness_version()} {harness_commit()}; Python {platform.python_version()}; TensorFlow {tf.__version__} "
            f"({cuda}); Horovod {horovod.__version__} (MPI {'yes' if hvd.mpi_built() else 'no'}, GPU operations "
            f"{gpu_ops}); MPI {mpi}; host {platform.node()}")


def preflight_allreduce(megabytes: int, repeats: int = 5) -> str | None:
    """Time a Horovod allreduce of ``megabytes`` over every rank; rank 0's
    report (time and bus bandwidth, 2(n-1)/n x size / time), None elsewhere."""
    import horovod.tensorflow as hvd
    import tensorflow as tf

    hvd.init()
    device = "/GPU:0" if tf.config.list_physical_devices("GPU") else "/CPU:0"
    with tf.device(device):
        tensor = tf.ones([megabytes * 2 ** 20 // 4], tf.float32)
        hvd.allreduce(tensor, op=hvd.Sum, name="preflight_warmup").numpy()
        start = time.perf_counter()
        for i in range(repeats):
            result = hvd.allreduce(tensor, op=hvd.Sum, name=f"preflight_{i}")
        result.numpy()
    seconds = (time.perf_counter() - start) / repeats
    size = hvd.size()
    busbw = 2 * (size - 1) / size * megabytes * 2 ** 20 / seconds / 1e9 if size > 1 else 0.0
    if hvd.rank() != 0:
        return None
    return (f"preflight: allreduce of {megabytes} MiB over {size} ranks ({device}): {seconds * 1e3:.1f} ms, "
            f"bus bandwidth {busbw:.2f} GB/s")
