#!/usr/bin/env bash
# Sets up everything mlperf-hpc needs on a fresh Debian machine: Open MPI from
# Debian, a .venv in the repository root with the pinned stack, Horovod built
# from source against that MPI, and the harness itself (editable).
# Safe to re-run: every step is skipped or cached when already done.
set -euo pipefail
cd "$(dirname "$0")"

if ! dpkg -s openmpi-bin libopenmpi-dev >/dev/null 2>&1; then
    echo "setup: installing Open MPI from Debian"
    SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq openmpi-bin libopenmpi-dev >/dev/null
fi

PY=${PYTHON:-python3.11}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
PIP=(.venv/bin/python -m pip install -q -c constraints.txt)
.venv/bin/python -m pip install -q --upgrade pip wheel setuptools -c constraints.txt
"${PIP[@]}" -r requirements.txt

if ! .venv/bin/python -c "import horovod.tensorflow" 2>/dev/null; then
    echo "setup: building horovod 0.28.1 against Open MPI (about 6 minutes on 2 cores; pip caches the wheel)"
    HOROVOD_WITH_TENSORFLOW=1 HOROVOD_WITH_MPI=1 HOROVOD_WITHOUT_PYTORCH=1 \
    HOROVOD_WITHOUT_MXNET=1 HOROVOD_WITHOUT_GLOO=1 \
        "${PIP[@]}" --no-build-isolation horovod==0.28.1
fi
"${PIP[@]}" --no-deps -e .
echo "setup: done (.venv ready; activate with 'source .venv/bin/activate')"
