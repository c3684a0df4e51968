#!/bin/bash
# mlperf-hpc: places local rank i of 1 on fugaku (NUMA, GPU, HCA), then runs the rank.
rank="${OMPI_COMM_WORLD_LOCAL_RANK:-${PLE_RANK_ON_NODE:-0}}"
case "$rank" in
  0) numa=4-7 ;;
  *) echo "bind.sh: local rank $rank is beyond the job's 1 per node" >&2; exit 2 ;;
esac
exec numactl --cpunodebind="$numa" --membind="$numa" "$@"
