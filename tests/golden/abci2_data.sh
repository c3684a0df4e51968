#!/bin/bash
#$ -N abci2-data
#$ -l rt_F=2
#$ -l h_rt=1:00:00
#$ -j y
#$ -cwd
#$ -o /jobs/abci2_data/
# mlperf-hpc: cosmoflow on abci2, 1 x 2 node(s) x 4 process(es), layout data, strong scaling
set -euo pipefail
export MLPERF_HPC_HOME=@REPO@
source /etc/profile.d/modules.sh
module purge
module load hpcx/2.12
source "$MLPERF_HPC_HOME/.venv/bin/activate"
export MLPERF_HPC_GPUS_PER_NODE=4
export MLPERF_HPC_THREADS=10
export NCCL_IB_DISABLE=0
export TF_ENABLE_ONEDNN_OPTS=1
JOB_DIR=/jobs/abci2_data
mkdir -p "$JOB_DIR"
STAGE_DIR="$SGE_LOCALDIR/mlperf-hpc"
sort -u "$SGE_JOB_HOSTLIST" | awk '{print $1" slots=4"}' > /jobs/abci2_data/hostfile
python -m mlperf_hpc.cli version
mpirun -n 8 -npernode 4 --hostfile /jobs/abci2_data/hostfile --map-by slot --bind-to none --mca pml ob1 --mca btl self,tcp --mca btl_tcp_if_include bond0 -x MLPERF_HPC_GPUS_PER_NODE -x MLPERF_HPC_THREADS -x NCCL_IB_DISABLE -x TF_ENABLE_ONEDNN_OPTS bash /jobs/abci2_data/bind.sh python -m mlperf_hpc.cli train cosmoflow --layout data --config @REPO@/cosmoflow/configs/cosmo.yaml --data /shared/data/cosmoflow --stage-dir "$STAGE_DIR" --log /jobs/abci2_data/result.log
