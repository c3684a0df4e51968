"""Run under ``mpirun -np 2``: ``parallel.mesh.trainer.initial_weights`` for a
benchmark's mini config, each rank seeded differently, against a Keras model
built eagerly. Rank 0 writes every rank's checksum of the weights and, per
weight, its name, shape and spread beside the Keras model's (JSON).

Usage: mpi_initial_weights.py BENCHMARK OUT.json
"""
import json
import sys

from core.runtime import configure_environment

configure_environment()

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from mpi4py import MPI  # noqa: E402

from core.benchmark import get_benchmark  # noqa: E402
from parallel.mesh.trainer import initial_weights, named_weights  # noqa: E402

name, out_path = sys.argv[1], sys.argv[2]
benchmark = get_benchmark(name)
config = benchmark.load_config()
rank = MPI.COMM_WORLD.Get_rank()
tf.keras.utils.set_random_seed(10 + rank)          # without the broadcast the ranks would differ
drawn = initial_weights(benchmark, config)
keras = named_weights(benchmark.build_model(config))
checksums = MPI.COMM_WORLD.gather(float(sum(np.abs(v).sum() for _, v in drawn)), root=0)
if rank == 0:
    with open(out_path, "w") as f:
        json.dump({"checksums": checksums,
                   "weights": [{"name": n, "shape": list(v.shape), "keras_name": k_name,
                                "keras_shape": list(k.shape), "std": float(v.std()), "keras_std": float(k.std()),
                                "mean": float(v.mean()), "keras_mean": float(k.mean()), "size": int(v.size)}
                               for (n, v), (k_name, k) in zip(drawn, keras)]}, f)
