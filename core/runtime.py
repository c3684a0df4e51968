"""Process-level settings that must be made before TensorFlow or MPI start.

TensorFlow leaves its oneDNN kernels off on AMD CPUs, where they make 3D
convolutions several times faster (docs/performance.md), so the harness turns
them on unless the user already chose. Thread pools are sized from the cores
this process is actually given (its affinity mask, shared among the ranks MPI
placed on the node when they are not bound), not from the whole machine.
"""
import os

# How long a rank that did not fail waits before exiting non-zero: once any
# rank exits non-zero mpirun kills the rest, so the rank that failed (or
# rank 0, which prints the job's one error line) gets to finish first.
PEER_EXIT_GRACE_SECONDS = 2.0

# What MPI launchers tell each process before MPI starts: Open MPI (and
# Fujitsu MPI, which is built on it), PMIx, and MPICH / Intel MPI / Slurm's PMI.
RANK_VARIABLES = ("OMPI_COMM_WORLD_RANK", "PMIX_RANK", "PMI_RANK")
SIZE_VARIABLES = ("OMPI_COMM_WORLD_SIZE", "PMI_SIZE")


def launcher_rank() -> int:
    """This process's MPI rank as its launcher set it (0 outside MPI)."""
    return next((int(os.environ[v]) for v in RANK_VARIABLES if os.environ.get(v, "").isdigit()), 0)


def launcher_size() -> int:
    """The MPI job's size as its launcher set it (1 outside MPI)."""
    return next((int(os.environ[v]) for v in SIZE_VARIABLES if os.environ.get(v, "").isdigit()), 1)


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
    # Horovod's background thread negotiates with the other ranks every few
    # milliseconds; Open MPI's default busy-wait then spins on a core the
    # TensorFlow threads need (docs/performance.md has what yielding saves).
    # Read by MPI_Init, so it works from here too.
    os.environ.setdefault("OMPI_MCA_mpi_yield_when_idle", "1")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    # MLPERF_HPC_THREADS is the one knob; the derived variables are always
    # rewritten from it, since a parent process (a launcher, a test) that
    # configured itself passes its own values down to every child rank.
    threads = int(os.environ.get("MLPERF_HPC_THREADS", cores_for_this_process()))
    os.environ["OMP_NUM_THREADS"] = str(threads)
    os.environ["TF_NUM_INTRAOP_THREADS"] = str(threads)
    # Independent ops (e.g. a conv's input and weight gradients) run side by
    # side on the inter-op pool: cap it too, or a 1-core rank uses two.
    os.environ["TF_NUM_INTEROP_THREADS"] = str(min(2, threads))
    return threads


def threads_per_process() -> int:
    """The intra-op threads ``configure_environment`` gave this process."""
    return int(os.environ.get("TF_NUM_INTRAOP_THREADS") or cores_for_this_process())
