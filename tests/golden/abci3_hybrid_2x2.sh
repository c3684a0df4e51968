#!/bin/bash
#PBS -N abci3-hybrid-2x2
#PBS -P gaa50000
#PBS -q rt_HF
#PBS -l select=2:mpiprocs=8
#PBS -l walltime=1:00:00
#PBS -j oe
#PBS -o /jobs/abci3_hybrid_2x2/
# mlperf-hpc: cosmoflow on abci3, 1 x 2 node(s) x 8 process(es), layout hybrid 2x2, strong scaling
set -euo pipefail
export MLPERF_HPC_HOME=@REPO@
source /etc/profile.d/modules.sh
module purge
module load hpcx/2.20
source "$MLPERF_HPC_HOME/.venv/bin/activate"
export MLPERF_HPC_GPUS_PER_NODE=8
export MLPERF_HPC_THREADS=12
export TF_ENABLE_ONEDNN_OPTS=1
JOB_DIR=/jobs/abci3_hybrid_2x2
mkdir -p "$JOB_DIR"
STAGE_DIR="$PBS_LOCALDIR/mlperf-hpc"
sort -u "$PBS_NODEFILE" | awk '{print $1" slots=8"}' > /jobs/abci3_hybrid_2x2/hostfile
python -m mlperf_hpc.cli version
mpirun -n 16 -npernode 8 --hostfile /jobs/abci3_hybrid_2x2/hostfile --map-by slot --bind-to none --mca pml ucx -x MLPERF_HPC_GPUS_PER_NODE -x MLPERF_HPC_THREADS -x TF_ENABLE_ONEDNN_OPTS bash /jobs/abci3_hybrid_2x2/bind.sh python -m mlperf_hpc.cli preflight --megabytes 64
mpirun -n 16 -npernode 8 --hostfile /jobs/abci3_hybrid_2x2/hostfile --map-by slot --bind-to none --mca pml ucx -x MLPERF_HPC_GPUS_PER_NODE -x MLPERF_HPC_THREADS -x TF_ENABLE_ONEDNN_OPTS bash /jobs/abci3_hybrid_2x2/bind.sh python -m mlperf_hpc.cli train cosmoflow --layout hybrid --spatial 2x2 --config @REPO@/cosmoflow/configs/cosmo.yaml --data /shared/data/cosmoflow --stage-dir "$STAGE_DIR" --log /jobs/abci3_hybrid_2x2/result.log
