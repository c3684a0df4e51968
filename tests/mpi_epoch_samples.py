"""Run under mpirun by test_data_parallel: every rank reads one training
epoch through the real CosmoFlow pipeline of the data-parallel layout and
rank 0 writes, per rank, the targets it saw (targets identify samples)."""
import json
import sys

from core.runtime import configure_environment

configure_environment()

import horovod.tensorflow as hvd  # noqa: E402
import tensorflow as tf  # noqa: E402

from cosmoflow.benchmark import CosmoFlow  # noqa: E402
from parallel import make_layout  # noqa: E402

config_path, out_path = sys.argv[1], sys.argv[2]
layout = make_layout("data")
benchmark = CosmoFlow()
config = benchmark.load_config(config_path)
pipes = benchmark.pipelines(config, layout.data_shard_index, layout.data_shards, seed=0)
batches = iter(pipes.train.dataset)
seen = tf.concat([next(batches)[1] for _ in range(pipes.train.steps)], axis=0)
gathered = hvd.allgather(seen[tf.newaxis])  # [ranks, samples, 4]
if layout.topology.is_root:
    with open(out_path, "w") as f:
        json.dump({"ranks": layout.topology.size, "steps": pipes.train.steps, "seen": gathered.numpy().tolist()}, f)
