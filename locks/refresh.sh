#!/usr/bin/env bash
# Rewrites the lock files from locks/requirements.in: exact versions and
# sha256 hashes of every package, for each target setup.sh installs. Run it
# after changing requirements.in (or to take newer releases), then run the
# test suite and commit the locks:
#
#   locks/refresh.sh
#
# Needs a Python with pip and the package index; uv comes from locks/tools.txt
# (hash-checked) into a temporary directory.
set -euo pipefail
cd "$(dirname "$0")"
PY=${PYTHON:-python3}
TOOLS=$(mktemp -d)
trap 'rm -rf -- "$TOOLS"' EXIT
"$PY" -m pip install -q --require-hashes --no-deps --target "$TOOLS" -r tools.txt
UV="$TOOLS/bin/uv"

# The Python 3.11 that setup.sh has uv install where a site has none.
UV_PYTHON=$(sed -n 's/^UV_PYTHON=\([0-9.]*\).*/\1/p' ../setup.sh)

lock() {             # lock NAME PLATFORM TENSORFLOW-REQUIREMENT
    { echo "$3"; cat requirements.in; } | "$UV" pip compile - --quiet --generate-hashes --python-version 3.11 \
        --python-platform "$2" --custom-compile-command "locks/refresh.sh" -o "$1.txt"
    echo "wrote locks/$1.txt ($(grep -c '^[a-z]' "$1.txt") packages)"
}
lock cpu-x86_64 x86_64-manylinux_2_28 "tensorflow-cpu==2.15.1"
lock gpu-x86_64 x86_64-manylinux_2_28 "tensorflow[and-cuda]==2.15.1"
lock cpu-aarch64 aarch64-manylinux_2_28 "tensorflow==2.15.1"
# Horovod alone: setup.sh builds it after TensorFlow, without its dependencies.
echo "horovod==0.28.1" | "$UV" pip compile - --quiet --no-deps --generate-hashes --python-version 3.11 \
    --custom-compile-command "locks/refresh.sh" -o horovod.txt
echo "wrote locks/horovod.txt"
"$UV" pip compile tools.in --quiet --generate-hashes --custom-compile-command "locks/refresh.sh" -o tools.txt
echo "wrote locks/tools.txt (uv installs Python $UV_PYTHON where a site has none: setup.sh's UV_PYTHON)"
