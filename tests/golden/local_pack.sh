#!/bin/bash
# mlperf-hpc: cosmoflow on local, 1 x 1 node(s) x 2 process(es), layout data, strong scaling
set -euo pipefail
export MLPERF_HPC_HOME=@REPO@
source "$MLPERF_HPC_HOME/.venv/bin/activate"
export MLPERF_HPC_THREADS=1
export OMPI_ALLOW_RUN_AS_ROOT=1
export OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export TF_ENABLE_ONEDNN_OPTS=1
JOB_DIR=/jobs/local_pack
mkdir -p "$JOB_DIR"
STAGE_DIR=$(mktemp -d "${TMPDIR:-/tmp}/mlperf-hpc-stage.XXXXXXXX")
trap 'rm -rf -- "$STAGE_DIR"' EXIT
python -m mlperf_hpc.cli version
status=0
mpirun -np 2 --oversubscribe --bind-to none -x MLPERF_HPC_THREADS -x OMPI_ALLOW_RUN_AS_ROOT -x OMPI_ALLOW_RUN_AS_ROOT_CONFIRM -x TF_ENABLE_ONEDNN_OPTS python -m mlperf_hpc.cli train cosmoflow --layout data --config @REPO@/cosmoflow/configs/cosmo.yaml --data /shared/data/cosmoflow --stage-dir "$STAGE_DIR" --log /jobs/local_pack/run_0/result.log --seed 40 || { echo "mlperf-hpc: run 0 failed" >&2; status=1; }
mpirun -np 2 --oversubscribe --bind-to none -x MLPERF_HPC_THREADS -x OMPI_ALLOW_RUN_AS_ROOT -x OMPI_ALLOW_RUN_AS_ROOT_CONFIRM -x TF_ENABLE_ONEDNN_OPTS python -m mlperf_hpc.cli train cosmoflow --layout data --config @REPO@/cosmoflow/configs/cosmo.yaml --data /shared/data/cosmoflow --stage-dir "$STAGE_DIR" --log /jobs/local_pack/run_1/result.log --seed 41 || { echo "mlperf-hpc: run 1 failed" >&2; status=1; }
mpirun -np 2 --oversubscribe --bind-to none -x MLPERF_HPC_THREADS -x OMPI_ALLOW_RUN_AS_ROOT -x OMPI_ALLOW_RUN_AS_ROOT_CONFIRM -x TF_ENABLE_ONEDNN_OPTS python -m mlperf_hpc.cli train cosmoflow --layout data --config @REPO@/cosmoflow/configs/cosmo.yaml --data /shared/data/cosmoflow --stage-dir "$STAGE_DIR" --log /jobs/local_pack/run_2/result.log --seed 42 || { echo "mlperf-hpc: run 2 failed" >&2; status=1; }
exit "$status"
