#!/bin/bash
# mlperf-hpc: places local rank i of 4 on abci2 (NUMA, GPU, HCA), then runs the rank.
rank="${OMPI_COMM_WORLD_LOCAL_RANK:-${PLE_RANK_ON_NODE:-0}}"
case "$rank" in
  0) export CUDA_VISIBLE_DEVICES=0; export UCX_NET_DEVICES=mlx5_0:1; export NCCL_IB_HCA=mlx5_0; numa=0 ;;
  1) export CUDA_VISIBLE_DEVICES=1; export UCX_NET_DEVICES=mlx5_0:1; export NCCL_IB_HCA=mlx5_0; numa=0 ;;
  2) export CUDA_VISIBLE_DEVICES=2; export UCX_NET_DEVICES=mlx5_1:1; export NCCL_IB_HCA=mlx5_1; numa=1 ;;
  3) export CUDA_VISIBLE_DEVICES=3; export UCX_NET_DEVICES=mlx5_1:1; export NCCL_IB_HCA=mlx5_1; numa=1 ;;
  *) echo "bind.sh: local rank $rank is beyond the job's 4 per node" >&2; exit 2 ;;
esac
exec numactl --cpunodebind="$numa" --membind="$numa" "$@"
