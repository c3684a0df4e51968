#!/bin/bash
#SBATCH -J slurm-data
#SBATCH -N 2
#SBATCH --ntasks-per-node=4
#SBATCH --cpus-per-task=16
#SBATCH -t 1:00:00
#SBATCH -p gpu
#SBATCH --gpus-per-node=4
#SBATCH -A m4242
#SBATCH -o /jobs/slurm_data/%x.%j.out
# mlperf-hpc: cosmoflow on slurm-gpu, 1 x 2 node(s) x 4 process(es), layout data, strong scaling
set -euo pipefail
export MLPERF_HPC_HOME=@REPO@
source "$MLPERF_HPC_HOME/.venv/bin/activate"
export MLPERF_HPC_GPUS_PER_NODE=4
export MLPERF_HPC_THREADS=16
export TF_ENABLE_ONEDNN_OPTS=1
JOB_DIR=/jobs/slurm_data
mkdir -p "$JOB_DIR"
STAGE_DIR=$(mktemp -d "${TMPDIR:-/tmp}/mlperf-hpc-stage.XXXXXXXX")
trap 'rm -rf -- "$STAGE_DIR"' EXIT
python -m mlperf_hpc.cli version
srun -N 2 -n 8 --ntasks-per-node=4 --cpus-per-task=16 --cpu-bind=cores --gpus-per-task=1 python -m mlperf_hpc.cli train cosmoflow --layout data --config @REPO@/cosmoflow/configs/cosmo.yaml --data /shared/data/cosmoflow --stage-dir "$STAGE_DIR" --log /jobs/slurm_data/result.log
