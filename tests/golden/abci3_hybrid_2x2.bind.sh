#!/bin/bash
# mlperf-hpc: places local rank i of 8 on abci3 (NUMA, GPU, HCA), then runs the rank.
rank="${OMPI_COMM_WORLD_LOCAL_RANK:-${PLE_RANK_ON_NODE:-0}}"
case "$rank" in
  0) export CUDA_VISIBLE_DEVICES=0; export UCX_NET_DEVICES=mlx5_ibn0:1; export NCCL_IB_HCA=mlx5_ibn0; numa=0 ;;
  1) export CUDA_VISIBLE_DEVICES=1; export UCX_NET_DEVICES=mlx5_ibn1:1; export NCCL_IB_HCA=mlx5_ibn1; numa=0 ;;
  2) export CUDA_VISIBLE_DEVICES=2; export UCX_NET_DEVICES=mlx5_ibn2:1; export NCCL_IB_HCA=mlx5_ibn2; numa=0 ;;
  3) export CUDA_VISIBLE_DEVICES=3; export UCX_NET_DEVICES=mlx5_ibn3:1; export NCCL_IB_HCA=mlx5_ibn3; numa=0 ;;
  4) export CUDA_VISIBLE_DEVICES=4; export UCX_NET_DEVICES=mlx5_ibn4:1; export NCCL_IB_HCA=mlx5_ibn4; numa=1 ;;
  5) export CUDA_VISIBLE_DEVICES=5; export UCX_NET_DEVICES=mlx5_ibn5:1; export NCCL_IB_HCA=mlx5_ibn5; numa=1 ;;
  6) export CUDA_VISIBLE_DEVICES=6; export UCX_NET_DEVICES=mlx5_ibn6:1; export NCCL_IB_HCA=mlx5_ibn6; numa=1 ;;
  7) export CUDA_VISIBLE_DEVICES=7; export UCX_NET_DEVICES=mlx5_ibn7:1; export NCCL_IB_HCA=mlx5_ibn7; numa=1 ;;
  *) echo "bind.sh: local rank $rank is beyond the job's 8 per node" >&2; exit 2 ;;
esac
exec numactl --cpunodebind="$numa" --membind="$numa" "$@"
