#!/usr/bin/env bash
# Sets up everything mlperf-hpc needs, without root where the site provides
# MPI: a .venv in the repository root with the locked stack (locks/: exact
# versions, hash-checked), mpi4py and Horovod built against the chosen MPI,
# and the harness itself (editable). Safe to re-run: every step is skipped
# or cached when already done.
#
#   ./setup.sh [--gpu | --cpu] [--dry-run]
#
# MPI: the MPI compiler wrapper on PATH (a module-loaded Open MPI, HPC-X,
# MPICH or Fujitsu MPI; MPICC=... names one), else, as root, Debian's Open
# MPI. Python 3.11: $PYTHON, python3.11, or python3 if it is 3.11, else one
# installed by uv (locks/tools.txt; Python $UV_PYTHON below). Device:
# --gpu (or an NVIDIA GPU found by nvidia-smi) installs the CUDA build of
# TensorFlow with CUDA, cuDNN and NCCL from pip wheels, so the site's CUDA
# modules do not matter, and builds Horovod with NCCL GPU operations.
# --dry-run prints what would be installed and run, and changes nothing.
set -euo pipefail
cd "$(dirname "$0")"
UV_PYTHON=3.11.18          # the Python 3.11 uv installs where a site has none

DEVICE=auto
DRY_RUN=0
for arg in "$@"; do
    case "$arg" in
        --gpu) DEVICE=gpu ;;
        --cpu) DEVICE=cpu ;;
        --dry-run) DRY_RUN=1 ;;
        -h|--help) sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "setup: unknown option '$arg': use --gpu, --cpu or --dry-run" >&2; exit 2 ;;
    esac
done

say() { echo "setup: $*"; }
run() {                          # a step that changes something: shown, and skipped on a dry run
    echo "+ $*"
    [ "$DRY_RUN" = 1 ] || "$@"
}
fail() { echo "setup: error: $*" >&2; exit 1; }

# --- MPI ---------------------------------------------------------------------------
find_mpicc() {
    local candidate
    for candidate in ${MPICC:-} mpicc mpifcc mpifccpx; do
        if command -v "$candidate" >/dev/null 2>&1; then
            command -v "$candidate"
            return 0
        fi
    done
    return 1
}

if MPI_CC=$(find_mpicc); then
    say "MPI: $MPI_CC (from PATH; Horovod and mpi4py are built against it)"
elif [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
    say "MPI: no MPI compiler on PATH; installing Debian's Open MPI (root)"
    run apt-get update -qq
    DEBIAN_FRONTEND=noninteractive run apt-get install -y -qq openmpi-bin libopenmpi-dev
    MPI_CC=/usr/bin/mpicc
else
    fail "no MPI compiler (mpicc, mpifcc) on PATH: load the site's MPI first (e.g. 'module load hpcx' or 'module load openmpi'), or set MPICC=/path/to/mpicc"
fi
MPI_BIN=$(dirname "$MPI_CC")
case "$(basename "$MPI_CC")" in
    mpifcc|mpifccpx) MPI_CXX="$MPI_BIN/$(basename "$MPI_CC" | sed 's/fcc/FCC/')" ;;    # Fujitsu MPI
    *) MPI_CXX="$MPI_BIN/mpicxx" ;;
esac

# --- Python 3.11 ---------------------------------------------------------------------
is_311() { "$1" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' 2>/dev/null; }
find_python() {
    local candidate
    for candidate in ${PYTHON:-} python3.11 python3; do
        if command -v "$candidate" >/dev/null 2>&1 && is_311 "$candidate"; then
            command -v "$candidate"
            return 0
        fi
    done
    return 1
}

if [ -x .venv/bin/python ] && is_311 .venv/bin/python; then
    PY=.venv/bin/python
    say "Python: the existing .venv ($($PY --version))"
elif PY=$(find_python); then
    say "Python: $PY ($($PY --version))"
else
    # Sites without a 3.11 (ABCI 3.0 has 3.12 and 3.13 modules): uv installs
    # a standalone 3.11 into the user's home, no root needed.
    ANY=$(command -v python3 || true)
    [ -n "$ANY" ] || fail "no python3 at all on PATH: load a Python module first"
    say "Python: no 3.11 found ($($ANY --version)); installing one with uv"
    run "$ANY" -m pip install --user -q --require-hashes --no-deps -r locks/tools.txt
    UV="$HOME/.local/bin/uv"
    run "$UV" python install "$UV_PYTHON"
    PY=$([ "$DRY_RUN" = 1 ] && echo "<uv's python$UV_PYTHON>" || "$UV" python find "$UV_PYTHON")
fi

# --- device ------------------------------------------------------------------------------
if [ "$DEVICE" = auto ]; then
    if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L 2>/dev/null | grep -q '^GPU '; then
        DEVICE=gpu
        say "device: GPU found by nvidia-smi"
    else
        DEVICE=cpu
    fi
fi
LOCK=locks/$DEVICE-$(uname -m).txt       # cpu-x86_64, gpu-x86_64 or cpu-aarch64 (A64FX)
[ -f "$LOCK" ] || fail "no lock file $LOCK: setup.sh installs the CPU build on x86_64 and aarch64 and the GPU build on x86_64"
say "device: $DEVICE; packages: $LOCK ($(grep -m1 -o '^tensorflow[a-z-]*\(\[and-cuda\]\)\?==[0-9.]*' "$LOCK"))"

# --- the venv ------------------------------------------------------------------------------
[ -x .venv/bin/python ] || run "$PY" -m venv .venv
VPY=.venv/bin/python
# Every package at its locked version, checked against its locked hashes.
PIP=("$VPY" -m pip install -q --require-hashes)
# mpi4py compiled against the chosen MPI, not a wheel with its own.
run env MPICC="$MPI_CC" "${PIP[@]}" --no-binary=mpi4py -r "$LOCK"

# The libmpi the chosen compiler links, and the one Horovod's library loads:
# pip's wheel cache does not know which MPI a cached Horovod was built with.
mpi_library() {
    local dir
    for dir in $("$MPI_CC" -show 2>/dev/null | tr ' ' '\n' | sed -n 's/^-L//p'); do
        if [ -e "$dir/libmpi.so" ]; then readlink -f "$dir/libmpi.so"; return 0; fi
    done
}
horovod_mpi_library() {
    ldd .venv/lib/python3.11/site-packages/horovod/tensorflow/mpi_lib*.so 2>/dev/null \
        | awk '/libmpi\.so/ {print $3; exit}' | xargs -r readlink -f
}
horovod_ready() {                # built with MPI (and NCCL on GPUs), against the chosen MPI
    "$VPY" - "$DEVICE" <<'EOF' 2>/dev/null || return 1
import sys
import horovod.tensorflow as hvd
sys.exit(not hvd.mpi_built() or (sys.argv[1] == "gpu" and not hvd.nccl_built()))
EOF
    local wanted
    wanted=$(mpi_library)
    [ -z "$wanted" ] || [ "$wanted" = "$(horovod_mpi_library)" ]
}
HOROVOD_ENV=(HOROVOD_WITH_TENSORFLOW=1 HOROVOD_WITH_MPI=1 HOROVOD_WITHOUT_PYTORCH=1 HOROVOD_WITHOUT_MXNET=1
             HOROVOD_WITHOUT_GLOO=1 "MPI_HOME=$(dirname "$MPI_BIN")" "PATH=$MPI_BIN:$PATH")
if [ "$DEVICE" = gpu ]; then
    # NCCL, the CUDA runtime and nvcc from the CUDA wheels TensorFlow brought.
    NVIDIA=$("$VPY" -c 'import nvidia; print(nvidia.__path__[0])' 2>/dev/null \
             || echo ".venv/lib/python3.11/site-packages/nvidia")
    HOROVOD_ENV+=(HOROVOD_GPU_OPERATIONS=NCCL "HOROVOD_NCCL_HOME=$NVIDIA/nccl" "HOROVOD_CUDA_HOME=$NVIDIA/cuda_runtime"
                  "PATH=$NVIDIA/cuda_nvcc/bin:$MPI_BIN:$PATH")
    WITH=" with NCCL GPU operations"
else
    WITH=""
fi
if horovod_ready; then
    say "Horovod: already built against $(horovod_mpi_library)"
else
    say "Horovod: building 0.28.1 against $MPI_CC$WITH (about 6 minutes on 2 cores; pip caches the wheel)"
    run env "${HOROVOD_ENV[@]}" "${PIP[@]}" --no-build-isolation --force-reinstall --no-deps -r locks/horovod.txt
    if [ "$DRY_RUN" = 0 ] && ! horovod_ready; then
        say "Horovod: the cached wheel was built for another MPI or device; rebuilding from source"
        run env "${HOROVOD_ENV[@]}" "${PIP[@]}" --no-build-isolation --force-reinstall --no-deps --no-cache-dir \
            -r locks/horovod.txt
        horovod_ready || fail "Horovod does not work after a fresh build against $(mpi_library):" \
            "$("$VPY" -c 'import horovod.tensorflow' 2>&1 | tail -1)"
    fi
fi
# The harness itself: no dependencies of its own, built with the locked setuptools.
run "$VPY" -m pip install -q --no-deps --no-build-isolation -e .
say "done (.venv ready; activate with 'source .venv/bin/activate')"
