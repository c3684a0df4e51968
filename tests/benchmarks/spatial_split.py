"""Spatial split on this machine (a benchmark, not a test): a benchmark's
model trained unsplit and split (each sample's first spatial axis cut
between processes: CosmoFlow's depth, DeepCAM's height), on the same two
cores: step time, samples/s and peak memory per process, and the split's
strong-scaling efficiency against one process on one thread. Each
configuration is a real ``mpirun`` job running the harness's trainer on
fixed in-memory batches (the input pipelines are measured by
cosmoflow_throughput.py).

    .venv/bin/python tests/benchmarks/spatial_split.py [--size 128] [--batch 2] [--steps 6] [--repeat 3]
    .venv/bin/python tests/benchmarks/spatial_split.py --benchmark deepcam --config deepcam/configs/deepcam.yaml \
        --batch 1 --steps 2 --skip mesh1x1,mesh4x1,keras1
    .venv/bin/python tests/benchmarks/spatial_split.py --collectives 2x1,4x1,2x2,4x4 [--size 32]

``--collectives`` builds each split's training step and reads, from the graph
itself, the Horovod collectives one step runs and the bytes each process
sends: an allreduce of S bytes over n processes sends 2(n-1)/n S (ring), an
allgather (n-1) S, an alltoall what its splits send to the others.

CosmoFlow runs its full-size model at ``--size``^3; DeepCAM runs ``--config``
(default the mini config) at its sample shape.

Step time is the median of the timed steps (the slowest rank's); with
``--repeat N`` every configuration runs N times, interleaved with the
others, and reports its median run. Each rank
is bound to cores of its own where the configuration fits the machine.
Peak memory is the process's maximum resident set; "activations" is that
peak minus the resident set after the model was built (before the first
step), i.e. what the training step itself needed.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
MPI_ENV = {"OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1"}
CONFIGS = {  # key: name, layout, split, processes, threads per process
    "keras": ("Keras, unsplit", "single", None, 1, 2),
    "keras1": ("Keras, unsplit, 1 thread", "single", None, 1, 1),
    "mesh1x1": ("Mesh TF, unsplit (1x1)", "spatial", "1x1", 1, 2),
    "mesh2x1": ("Mesh TF, split 2x1", "spatial", "2x1", 2, 1),
    "mesh4x1": ("Mesh TF, split 4x1", "spatial", "4x1", 4, 1),
}
COLLECTIVES = ("alltoall", "allgather", "allreduce")
FUGAKU_4X1_EFFICIENCY = 0.44       # 1.75x from 4 processes per sample (issue 12, Fugaku's runs)


def rss_mib() -> float:
    """Current resident set of this process."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2 ** 20


def worker(args: argparse.Namespace) -> None:
    """One rank: build the harness's trainer for the layout, time its steps."""
    from core.runtime import configure_environment

    configure_environment()
    import numpy as np
    import tensorflow as tf

    from core.benchmark import get_benchmark
    from parallel import make_layout
    from parallel.topology import parse_split

    benchmark = get_benchmark(args.benchmark)
    rng = np.random.default_rng(0)
    if args.benchmark == "cosmoflow":
        config = benchmark.load_config(REPO / "cosmoflow" / "configs" / "cosmo.yaml", {
            "data.sample_shape": [args.size, args.size, args.size, 4], "data.batch_size": args.batch,
            "model.dropout": 0.0})
        x = rng.uniform(0, 3, size=[args.batch] + config.data.sample_shape)
        y = rng.uniform(-1, 1, size=[args.batch, 4]).astype(np.float32)
    else:
        config = benchmark.load_config(REPO / args.config, {"data.batch_size": args.batch})
        x = rng.uniform(0, 1, size=[args.batch] + config.data.sample_shape)
        y = rng.integers(0, 3, size=[args.batch] + config.data.sample_shape[:2]).astype(np.int32)
    x, y = tf.constant(x.astype(np.float32)), tf.constant(y)
    layout = make_layout(args.layout, parse_split(args.split) if args.split else (1, 1))
    trainer = layout.make_trainer(benchmark, config, seed=1)
    if args.count:
        sent = step_collectives(trainer, layout)
        print("RESULT " + json.dumps({"rank": layout.topology.rank, **sent}), flush=True)
        return
    trainer.set_learning_rate(1e-4)
    built = rss_mib()
    trainer.train_step(x, y)                      # warm-up: graph optimisation, allocations
    layout.barrier()
    steps = []
    for _ in range(args.steps):
        start = time.perf_counter()
        trainer.train_step(x, y)             # a split's ranks meet in its collectives every step
        steps.append(time.perf_counter() - start)
    layout.barrier()
    # The median: on a shared 2-core machine one step in a few is slowed
    # by the OS, and a mean carries it into every ratio.
    step = float(np.median(steps))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    report = {"rank": layout.topology.rank, "step_s": step, "peak_mib": peak, "built_mib": built}
    print("RESULT " + json.dumps(report), flush=True)


def step_collectives(trainer, layout) -> dict:
    """The Horovod collectives a training step runs (the ops ``train_op``
    depends on) and the bytes this process sends in them."""
    from tensorflow.python.framework import tensor_util

    from tests.mesh_harness import collective_kind, step_collectives as collective_ops

    set_sizes = {0: layout.topology.size}
    set_sizes.update({ps.process_set_id: len(ranks) for ranks, ps in layout.process_sets.items()})
    counts = {kind: 0 for kind in COLLECTIVES}
    sent = {kind: 0.0 for kind in COLLECTIVES}
    for op in collective_ops(trainer.train_op):
        kind = collective_kind(op)
        n = set_sizes[op.get_attr("process_set_id")]
        tensor = op.inputs[0]
        size = sum(t.shape.num_elements() * t.dtype.size for t in op.inputs) if kind == "allreduce" else \
            tensor.shape.num_elements() * tensor.dtype.size
        counts[kind] += 1
        if kind == "allreduce":
            sent[kind] += 2 * (n - 1) / n * size
        elif kind == "allgather":
            sent[kind] += (n - 1) * size
        else:
            splits = tensor_util.constant_value(op.inputs[1])
            row = size / max(tensor.shape[0], 1)
            sent[kind] += row * (sum(splits) - splits[_rank_in_set(layout, op.get_attr("process_set_id"))])
    return {**{f"{k}_n": v for k, v in counts.items()}, **{f"{k}_bytes": v for k, v in sent.items()}}


def _rank_in_set(layout, process_set_id: int) -> int:
    """This process's index in a Horovod process set (its rank order)."""
    if process_set_id == 0:
        return layout.topology.rank
    ranks = next(r for r, ps in layout.process_sets.items() if ps.process_set_id == process_set_id)
    return ranks.index(layout.topology.rank)


def placement(processes: int, threads: int) -> list[str]:
    """mpirun's placement: each rank on cores of its own where the job fits
    the machine, as a site's launcher places ranks (a split's ranks, left
    unbound, shared cores with each other's Horovod threads: CosmoFlow 128^3
    2x1 steps varied 2.2-2.65 s); unbound and oversubscribed where it does not."""
    if processes * threads <= len(os.sched_getaffinity(0)):
        return ["--map-by", f"slot:PE={threads}", "--bind-to", "core"]
    return ["--oversubscribe", "--bind-to", "none"]


def mpirun_worker(processes: int, threads: int, worker_args: list[str], what: str) -> list[dict]:
    """Run this script's worker on ``processes`` ranks; each rank's RESULT."""
    env = {**os.environ, **MPI_ENV, "MLPERF_HPC_THREADS": str(threads)}
    command = ["mpirun", "-np", str(processes), *placement(processes, threads), "-x", "MLPERF_HPC_THREADS",
               sys.executable, __file__, "--worker", *worker_args]
    result = subprocess.run(command, capture_output=True, text=True, env=env, cwd=REPO)
    if result.returncode:
        sys.exit(f"{what} failed:\n{result.stderr[-3000:]}")
    # Ranks print at the same moment: mpirun may join their lines.
    return [json.loads(found) for found in re.findall(r"RESULT (\{[^}]*\})", result.stdout)]


def common_args(args: argparse.Namespace) -> list[str]:
    return ["--size", str(args.size), "--benchmark", args.benchmark, "--config", args.config,
            "--batch", str(args.batch), "--steps", str(args.steps)]


def run(name: str, layout: str, split: str | None, processes: int, threads: int, args) -> dict:
    ranks = mpirun_worker(processes, threads, ["--layout", layout, *common_args(args)]
                          + (["--split", split] if split else []), name)
    step = max(r["step_s"] for r in ranks)
    return {"name": name, "processes": processes, "threads": threads, "step_s": step,
            "samples_s": args.batch / step, "peak_mib": max(r["peak_mib"] for r in ranks),
            "activations_mib": max(r["peak_mib"] - r["built_mib"] for r in ranks)}


def median_run(runs: list[dict], batch: int) -> dict:
    """One configuration's rounds: the median step, the largest memory."""
    step = statistics.median(r["step_s"] for r in runs)
    return {**runs[0], "step_s": step, "samples_s": batch / step, "peak_mib": max(r["peak_mib"] for r in runs),
            "activations_mib": max(r["activations_mib"] for r in runs)}


def forward_flops(args: argparse.Namespace) -> float:
    """FLOPs of one sample's forward pass (a training step costs about 3x)."""
    from core.benchmark import get_benchmark
    from core.model_summary import forward_flops as model_flops

    benchmark = get_benchmark(args.benchmark)
    config = (benchmark.load_config(REPO / "cosmoflow" / "configs" / "cosmo.yaml",
                                    {"data.sample_shape": [args.size, args.size, args.size, 4]})
              if args.benchmark == "cosmoflow" else benchmark.load_config(REPO / args.config))
    return model_flops(benchmark.build_model(config))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--benchmark", default="cosmoflow", choices=["cosmoflow", "deepcam"])
    parser.add_argument("--size", type=int, default=128, help="CosmoFlow: cube side")
    parser.add_argument("--config", default="deepcam/configs/mini.yaml", help="DeepCAM: config (sample shape, model)")
    parser.add_argument("--skip", default="", help="comma-separated configurations to leave out: "
                                                   + ", ".join(CONFIGS))
    parser.add_argument("--batch", type=int, default=2, help="samples per step (per group)")
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--repeat", type=int, default=1,
                        help="rounds of all configurations, interleaved; each reports its median round")
    parser.add_argument("--collectives", help="comma-separated splits (e.g. 2x1,4x1,2x2,4x4): print the "
                                               "collectives and bytes per rank of one training step instead")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--count", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--layout", help=argparse.SUPPRESS)
    parser.add_argument("--split", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return
    if args.collectives:
        print_collectives(args)
        return

    if args.benchmark == "cosmoflow":
        what = f"CosmoFlow reference model, {args.size}^3 x 4"
    else:
        what = f"DeepCAM {args.config}"
    flops = forward_flops(args)
    print(f"{what}, {flops / 1e9:.1f} GFLOP forward per sample, batch {args.batch}, "
          f"median of {args.steps} timed steps (median of {args.repeat} interleaved rounds), 2 cores, oneDNN on")
    skipped = set(filter(None, args.skip.split(",")))
    # Rounds of every configuration in turn: a machine's speed drifts by
    # 10% over minutes, and interleaving spreads that drift over all of them.
    runs: dict[str, list[dict]] = {}
    for _ in range(args.repeat):
        for key, config in CONFIGS.items():
            if key not in skipped:
                runs.setdefault(key, []).append(run(*config, args))
    rows = {key: median_run(found, args.batch) for key, found in runs.items()}
    print(f"{'configuration':26} {'procs x thr':>11} {'step s':>8} {'samples/s':>10} {'GFLOP/s':>8} "
          f"{'peak MiB/proc':>14} {'step MiB/proc':>14}")
    for r in rows.values():
        print(f"{r['name']:26} {r['processes']:>5} x {r['threads']:<3} {r['step_s']:8.2f} {r['samples_s']:10.2f} "
              f"{3 * flops * r['samples_s'] / 1e9:8.0f} {r['peak_mib']:14.0f} {r['activations_mib']:14.0f}")
    for key in ("mesh2x1", "mesh4x1"):
        if key not in rows:
            continue
        split = rows[key]
        for other in ("mesh1x1", "keras"):
            if other in rows:
                unsplit = rows[other]
                print(f"{split['name']} vs {unsplit['name']}: peak memory per process "
                      f"x{split['peak_mib'] / unsplit['peak_mib']:.2f}, step memory per process "
                      f"x{split['activations_mib'] / unsplit['activations_mib']:.2f}, "
                      f"throughput x{split['samples_s'] / unsplit['samples_s']:.2f}")
        if "keras1" in rows:
            speedup = split["samples_s"] / rows["keras1"]["samples_s"]
            print(f"{split['name']} vs Keras on 1 process x 1 thread: x{speedup:.2f}, strong-scaling efficiency "
                  f"{speedup / split['processes']:.0%} on {split['processes']} processes "
                  f"(Fugaku 4x1: {FUGAKU_4X1_EFFICIENCY:.0%})")
    if "mesh1x1" in rows and "keras" in rows:
        print(f"Mesh TF 1x1 vs Keras: throughput x{rows['mesh1x1']['samples_s'] / rows['keras']['samples_s']:.2f}")


def print_collectives(args: argparse.Namespace) -> None:
    print(f"{args.benchmark} at {args.size if args.benchmark == 'cosmoflow' else args.config}, batch {args.batch}: "
          f"one training step's Horovod collectives")
    print("per step: collectives (max over ranks) / MiB one rank sends (max over ranks)")
    print(f"{'split':6} {'ranks':>5} " + " ".join(f"{kind:>18}" for kind in COLLECTIVES) + f" {'total':>18}")
    for split in args.collectives.split(","):
        d, h = (int(p) for p in split.split("x"))
        ranks = mpirun_worker(d * h, 1, ["--layout", "spatial", "--split", split, "--count", *common_args(args)],
                              split)
        cells = []
        for kinds in [[k] for k in COLLECTIVES] + [list(COLLECTIVES)]:
            n = max(sum(r[f"{k}_n"] for k in kinds) for r in ranks)
            sent = max(sum(r[f"{k}_bytes"] for k in kinds) for r in ranks) / 2 ** 20
            cells.append(f"{n:>6} / {sent:>9.2f}")
        print(f"{split:6} {d * h:>5} " + " ".join(f"{c:>18}" for c in cells))


if __name__ == "__main__":
    main()
