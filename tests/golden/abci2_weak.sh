#!/bin/bash
#$ -N abci2-weak
#$ -l rt_F=4
#$ -l h_rt=1:00:00
#$ -j y
#$ -cwd
#$ -o /jobs/abci2_weak/
# mlperf-hpc: cosmoflow on abci2, 2 x 2 node(s) x 4 process(es), layout data, weak scaling
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
JOB_DIR=/jobs/abci2_weak
mkdir -p "$JOB_DIR"
STAGE_DIR="$SGE_LOCALDIR/mlperf-hpc"
sort -u "$SGE_JOB_HOSTLIST" | awk '{print $1" slots=4"}' > /jobs/abci2_weak/hostfile
sed -n '1,2p' /jobs/abci2_weak/hostfile > /jobs/abci2_weak/hostfile.0
sed -n '3,4p' /jobs/abci2_weak/hostfile > /jobs/abci2_weak/hostfile.1
python -m mlperf_hpc.cli version
mkdir -p "$JOB_DIR/gate"
pids=()
mpirun -n 8 -npernode 4 --hostfile /jobs/abci2_weak/hostfile.0 --map-by slot --bind-to none --mca pml ob1 --mca btl self,tcp --mca btl_tcp_if_include bond0 -x MLPERF_HPC_GPUS_PER_NODE -x MLPERF_HPC_THREADS -x NCCL_IB_DISABLE -x TF_ENABLE_ONEDNN_OPTS bash /jobs/abci2_weak/bind.sh python -m mlperf_hpc.cli train cosmoflow --layout data --config @REPO@/cosmoflow/configs/cosmo.yaml --data /shared/data/cosmoflow --stage-dir "$STAGE_DIR" --log /jobs/abci2_weak/instance_0.log --instances 2 --instance-id 0 --start-gate /jobs/abci2_weak/gate --gate-timeout 1800 &
pids+=($!)
mpirun -n 8 -npernode 4 --hostfile /jobs/abci2_weak/hostfile.1 --map-by slot --bind-to none --mca pml ob1 --mca btl self,tcp --mca btl_tcp_if_include bond0 -x MLPERF_HPC_GPUS_PER_NODE -x MLPERF_HPC_THREADS -x NCCL_IB_DISABLE -x TF_ENABLE_ONEDNN_OPTS bash /jobs/abci2_weak/bind.sh python -m mlperf_hpc.cli train cosmoflow --layout data --config @REPO@/cosmoflow/configs/cosmo.yaml --data /shared/data/cosmoflow --stage-dir "$STAGE_DIR" --log /jobs/abci2_weak/instance_1.log --instances 2 --instance-id 1 --start-gate /jobs/abci2_weak/gate --gate-timeout 1800 &
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
