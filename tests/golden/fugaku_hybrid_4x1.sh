#!/bin/bash
#PJM -N fugaku-hybrid-4x1
#PJM -L "node=2x2x2:torus"
#PJM -L "rscgrp=small"
#PJM -L "elapse=2:00:00"
#PJM -L "freq=2200"
#PJM --mpi "max-proc-per-node=1"
#PJM --mpi "shape=2x2x2"
#PJM --mpi "rank-map-hostfile=/jobs/fugaku_hybrid_4x1/rankmap"
#PJM -g hp240123
#PJM --llio localtmp-size=80Gi
#PJM -x PJM_LLIO_GFSCACHE=/vol0004:/vol0006
#PJM -S
#PJM --spath "/jobs/fugaku_hybrid_4x1/%n.%j.stat"
#PJM -o "/jobs/fugaku_hybrid_4x1/%n.%j.out"
#PJM -e "/jobs/fugaku_hybrid_4x1/%n.%j.err"
# mlperf-hpc: cosmoflow on fugaku, 1 x 8 node(s) x 1 process(es), layout hybrid 4x1, strong scaling
set -euo pipefail
export MLPERF_HPC_HOME=@REPO@
source /vol0004/apps/oss/spack/share/spack/setup-env.sh
source "$MLPERF_HPC_HOME/.venv/bin/activate"
export HOROVOD_MPI_THREADS_DISABLE=1
export MLPERF_HPC_THREADS=48
export OMP_PROC_BIND=close
export PLE_MPI_STD_EMPTYFILE=off
export TF_ENABLE_ONEDNN_OPTS=1
JOB_DIR=/jobs/fugaku_hybrid_4x1
mkdir -p "$JOB_DIR"
STAGE_DIR="$PJM_LOCALTMP/mlperf-hpc"
/home/system/tool/dir_transfer "$MLPERF_HPC_HOME/.venv" "$MLPERF_HPC_HOME/core" "$MLPERF_HPC_HOME/parallel" "$MLPERF_HPC_HOME/cosmoflow" "$MLPERF_HPC_HOME/deepcam" "$MLPERF_HPC_HOME/launch" "$MLPERF_HPC_HOME/mlperf_hpc"
llio_transfer @REPO@/cosmoflow/configs/cosmo.yaml
python -m mlperf_hpc.cli version
mpiexec -np 8 -of-proc /jobs/fugaku_hybrid_4x1/output/0/%/1000r/out bash /jobs/fugaku_hybrid_4x1/bind.sh python -m mlperf_hpc.cli train cosmoflow --layout hybrid --spatial 4x1 --config @REPO@/cosmoflow/configs/cosmo.yaml --data /shared/data/cosmoflow --stage-dir "$STAGE_DIR" --log /jobs/fugaku_hybrid_4x1/result.log
