#!/bin/bash
#SBATCH -J slurm-weak
#SBATCH -N 4
#SBATCH --ntasks-per-node=4
#SBATCH --cpus-per-task=16
#SBATCH -t 1:00:00
#SBATCH -p gpu
#SBATCH --gpus-per-node=4
#SBATCH -A m4242
#SBATCH -o /jobs/slurm_weak/%x.%j.out
# mlperf-hpc: cosmoflow on slurm-gpu, 2 x 2 node(s) x 4 process(es), layout data, weak scaling
set -euo pipefail
export MLPERF_HPC_HOME=@REPO@
source "$MLPERF_HPC_HOME/.venv/bin/activate"
export MLPERF_HPC_GPUS_PER_NODE=4
export MLPERF_HPC_THREADS=16
export TF_ENABLE_ONEDNN_OPTS=1
JOB_DIR=/jobs/slurm_weak
mkdir -p "$JOB_DIR"
STAGE_DIR=$(mktemp -d "${TMPDIR:-/tmp}/mlperf-hpc-stage.XXXXXXXX")
trap 'rm -rf -- "$STAGE_DIR"' EXIT
python -m mlperf_hpc.cli version
mkdir -p "$JOB_DIR/gate"
pids=()
srun -N 2 -n 8 --ntasks-per-node=4 --cpus-per-task=16 --cpu-bind=cores --gpus-per-task=1 --exact --relative=0 python -m mlperf_hpc.cli train cosmoflow --layout data --config @REPO@/cosmoflow/configs/cosmo.yaml --data /shared/data/cosmoflow --stage-dir "$STAGE_DIR" --log /jobs/slurm_weak/instance_0.log --seed 7 --instances 2 --instance-id 0 --start-gate /jobs/slurm_weak/gate --gate-timeout 1800 &
pids+=($!)
srun -N 2 -n 8 --ntasks-per-node=4 --cpus-per-task=16 --cpu-bind=cores --gpus-per-task=1 --exact --relative=2 python -m mlperf_hpc.cli train cosmoflow --layout data --config @REPO@/cosmoflow/configs/cosmo.yaml --data /shared/data/cosmoflow --stage-dir "$STAGE_DIR" --log /jobs/slurm_weak/instance_1.log --seed 8 --instances 2 --instance-id 1 --start-gate /jobs/slurm_weak/gate --gate-timeout 1800 &
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
