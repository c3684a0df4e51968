"""Where each rank of a node runs: its CPU and memory NUMA nodes, its
accelerator and the network adapter next to it, from the system's binding
data and the job's processes per node. The job runs every rank through a
small wrapper (``bind.sh``) that reads its local rank and applies its share."""
from __future__ import annotations

import shlex
from dataclasses import dataclass

from core.errors import HarnessError
from launch.system import System

WRAPPER = "bind.sh"


@dataclass
class RankPlacement:
    numa: str | None       # numactl node list, e.g. "4" or "4-7"
    gpu: int | None
    hca: str | None


def _numa_list(nodes: list[int]) -> str:
    return f"{nodes[0]}-{nodes[-1]}" if len(nodes) > 1 and nodes == list(range(nodes[0], nodes[-1] + 1)) \
        else ",".join(map(str, nodes))


def placements(system: System, ppn: int) -> list[RankPlacement] | None:
    """Each local rank's placement, or None where the system binds nothing;
    a count of ranks that cannot share the node evenly is refused."""
    b = system.binding
    if not b.numa_nodes and not system.accelerators_per_node:
        return None
    numa = b.numa_nodes
    if numa and not (len(numa) % ppn == 0 or ppn % len(numa) == 0):
        raise HarnessError(f"--ppn {ppn} cannot share {system.name}'s {len(numa)} NUMA domains "
                           f"({_numa_list(numa)}) evenly: use a divisor or a multiple of {len(numa)}")
    gpus = system.accelerators_per_node
    if gpus and ppn != gpus:
        raise HarnessError(f"--ppn {ppn} on {system.name} must be {gpus}: one rank per GPU")
    out = []
    for rank in range(ppn):
        if not numa:
            domains = None
        elif ppn <= len(numa):                     # a rank spans several domains (Fugaku: 1 rank x 4 CMGs)
            share = len(numa) // ppn
            domains = _numa_list(numa[rank * share:(rank + 1) * share])
        else:                                      # several ranks per domain
            domains = str(numa[rank * len(numa) // ppn])
        out.append(RankPlacement(domains, rank if gpus else None,
                                 b.hcas[rank % len(b.hcas)] if b.hcas else None))
    return out


def wrapper_script(system: System, ppn: int) -> str | None:
    """The per-rank wrapper: bind, then run the rank's command."""
    ranks = placements(system, ppn)
    if ranks is None:
        return None
    lines = ["#!/bin/bash",
             f"# mlperf-hpc: places local rank i of {ppn} on {system.name} (NUMA, GPU, HCA), then runs the rank.",
             'rank="${OMPI_COMM_WORLD_LOCAL_RANK:-${PLE_RANK_ON_NODE:-0}}"', 'case "$rank" in']
    for i, r in enumerate(ranks):
        settings = []
        if r.gpu is not None:
            settings.append(f"export CUDA_VISIBLE_DEVICES={r.gpu}")
        if r.hca is not None:
            settings += [f"export UCX_NET_DEVICES={r.hca}:1", f"export NCCL_IB_HCA={r.hca}"]
        if r.numa is not None:
            settings.append(f"numa={shlex.quote(r.numa)}")
        lines.append(f"  {i}) {'; '.join(settings) or ':'} ;;")
    lines += ['  *) echo "bind.sh: local rank $rank is beyond the job\'s ' + str(ppn) + ' per node" >&2; exit 2 ;;',
              "esac"]
    if any(r.numa is not None for r in ranks):
        lines.append('exec numactl --cpunodebind="$numa" --membind="$numa" "$@"')
    else:
        lines.append('exec "$@"')
    return "\n".join(lines) + "\n"
