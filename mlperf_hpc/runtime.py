"""Process-level TensorFlow settings that must be made before TF is imported.

TensorFlow leaves its oneDNN kernels off on AMD CPUs; they make 3D
convolutions about 3.6x faster on this class of machine, so the harness turns
them on unless the user already chose. Thread pools are sized from the cores
this process is actually given (its affinity mask, shared among the ranks MPI
placed on the node when they are not bound), not from the whole machine.
"""
import os


def cores_for_this_process() -> int:
    """Cores available to this rank: its affinity mask, split between the
    local ranks when MPI did not bind them to disjoint cores."""
    cores = len(os.sched_getaffinity(0))
    local_size = int(os.environ.get("OMPI_COMM_WORLD_LOCAL_SIZE", "1"))
    if local_size > 1 and cores >= os.cpu_count():
        cores //= local_size
    return max(1, cores)


def configure_environment() -> int:
    """Set oneDNN, quiet TF logging and thread counts; returns the intra-op
    thread count. Call before the first ``import tensorflow``."""
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    threads = int(os.environ.get("MLPERF_HPC_THREADS", cores_for_this_process()))
    os.environ.setdefault("OMP_NUM_THREADS", str(threads))
    os.environ.setdefault("TF_NUM_INTRAOP_THREADS", str(threads))
    os.environ.setdefault("TF_NUM_INTEROP_THREADS", "2")
    return threads
