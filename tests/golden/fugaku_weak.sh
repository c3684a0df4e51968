#!/bin/bash
#PJM -N fugaku-weak
#PJM -L "node=2x2x2:torus"
#PJM -L "rscgrp=small"
#PJM -L "elapse=1:00:00"
#PJM -L "freq=2200"
#PJM --mpi "max-proc-per-node=1"
#PJM --mpi "shape=2x2x2"
#PJM -g hp240123
#PJM --llio localtmp-size=80Gi
#PJM -x PJM_LLIO_GFSCACHE=/vol0004:/vol0006
#PJM -S
#PJM --spath "/jobs/fugaku_weak/%n.%j.stat"
#PJM -o "/jobs/fugaku_weak/%n.%j.out"
#PJM -e "/jobs/fugaku_weak/%n.%j.err"
# mlperf-hpc: cosmoflow on fugaku, 2 x 4 node(s) x 1 process(es), layout data, weak scaling
set -euo pipefail
export MLPERF_HPC_HOME=@REPO@
source /vol0004/apps/oss/spack/share/spack/setup-env.sh
source "$MLPERF_HPC_HOME/.venv/bin/activate"
export HOROVOD_MPI_THREADS_DISABLE=1
export MLPERF_HPC_THREADS=48
export OMP_PROC_BIND=close
export PLE_MPI_STD_EMPTYFILE=off
export TF_ENABLE_ONEDNN_OPTS=1
JOB_DIR=/jobs/fugaku_weak
mkdir -p "$JOB_DIR"
STAGE_DIR="$PJM_LOCALTMP/mlperf-hpc"
/home/system/tool/dir_transfer "$MLPERF_HPC_HOME/.venv" "$MLPERF_HPC_HOME/core" "$MLPERF_HPC_HOME/parallel" "$MLPERF_HPC_HOME/cosmoflow" "$MLPERF_HPC_HOME/deepcam" "$MLPERF_HPC_HOME/launch" "$MLPERF_HPC_HOME/mlperf_hpc"
llio_transfer @REPO@/cosmoflow/configs/cosmo.yaml
python -m mlperf_hpc.cli version
mkdir -p "$JOB_DIR/gate"
pids=()
mpiexec -np 4 -of-proc /jobs/fugaku_weak/output/0/%/1000r/out -vcoordfile /jobs/fugaku_weak/instance_0.vcoord bash /jobs/fugaku_weak/bind.sh python -m mlperf_hpc.cli train cosmoflow --layout data --config @REPO@/cosmoflow/configs/cosmo.yaml --data /shared/data/cosmoflow --stage-dir "$STAGE_DIR" --log /jobs/fugaku_weak/instance_0.log --seed 100 --instances 2 --instance-id 0 --start-gate /jobs/fugaku_weak/gate --gate-timeout 1800 &
pids+=($!)
mpiexec -np 4 -of-proc /jobs/fugaku_weak/output/1/%/1000r/out -vcoordfile /jobs/fugaku_weak/instance_1.vcoord bash /jobs/fugaku_weak/bind.sh python -m mlperf_hpc.cli train cosmoflow --layout data --config @REPO@/cosmoflow/configs/cosmo.yaml --data /shared/data/cosmoflow --stage-dir "$STAGE_DIR" --log /jobs/fugaku_weak/instance_1.log --seed 101 --instances 2 --instance-id 1 --start-gate /jobs/fugaku_weak/gate --gate-timeout 1800 &
pids+=($!)
failed=""
while :; do
    running=0
    for i in "${!pids[@]}"; do
        pid=${pids[$i]}
        [ -n "$pid" ] || continue
        if kill -0 "$pid" 2>/dev/null; then running=1; continue; fi
        code=0; wait "$pid" || code=$?
        pids[$i]=""
        if [ "$code" -ne 0 ] && [ -z "$failed" ]; then
            failed=$i
            echo "mlperf-hpc: instance $i failed (exit $code): stopping the other instances" >&2
            for other in "${pids[@]}"; do [ -z "$other" ] || kill -TERM "$other" 2>/dev/null || true; done
        fi
    done
    [ "$running" = 1 ] || break
    sleep 2
done
[ -z "$failed" ] || { echo "mlperf-hpc: weak-scaling job failed: instance $failed" >&2; exit $(( failed < 155 ? 100 + failed : 255 )); }
