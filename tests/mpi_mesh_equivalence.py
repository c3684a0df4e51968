"""Run under ``mpirun -np G*D*H``: the Mesh TF CosmoFlow of the default mini
config (32^3 x 4, five conv layers: small splits leave blocks too thin to
pool, which the model gathers), G data-parallel groups each splitting samples
DxH, against the Keras model with the same weights on the same batch (2
samples per group). Rank 0 writes the relative differences of the outputs
and of every weight's gradient, and what each rank's training step runs
(collectives) and keeps (optimizer state), as JSON.

Usage: mpi_mesh_equivalence.py DxH OUT.json
"""
import json
import os
import sys

from core.runtime import configure_environment

configure_environment()

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from cosmoflow.benchmark import CosmoFlow  # noqa: E402
from parallel.mesh.layout import MeshParallel  # noqa: E402
from parallel.topology import parse_split  # noqa: E402
from tests.helpers import REPO  # noqa: E402
from tests.mesh_harness import run_mesh_model  # noqa: E402

split, out_path = parse_split(sys.argv[1]), sys.argv[2]
benchmark = CosmoFlow()
# Dropout draws differ between the two models; 2 samples per group.
config = benchmark.load_config(REPO / "cosmoflow" / "configs" / "mini.yaml",
                               {"model.dropout": 0.0, "data.batch_size": 2})
SHAPE = config.data.sample_shape

layout = MeshParallel("hybrid", split)
groups, batch = layout.data_shards, 2 * layout.data_shards
tf.keras.utils.set_random_seed(7)
keras_model = benchmark.build_model(config)
rng = np.random.default_rng(0)
# The split model takes raw int16 volumes and normalises its blocks; the
# Keras model here takes what the reference feeds it, log(x + 1).
raw = rng.integers(0, 200, size=[batch] + SHAPE).astype(np.int16)
x = np.log1p(raw.astype(np.float32))
y = rng.uniform(-1, 1, size=[batch, 4]).astype(np.float32)


@tf.function
def keras_step(x, y):
    # In a tf.function, as the Keras trainer runs it: eager and graph max
    # pooling (oneDNN) send a gradient to different ones of tied maxima.
    with tf.GradientTape() as tape:
        predictions = keras_model(x)
        loss = tf.reduce_mean(tf.square(y - predictions))
    return predictions, tape.gradient(loss, keras_model.trainable_variables)


keras_predictions, keras_gradients = keras_step(x, y)
keras_gradients = [g.numpy() for g in keras_gradients]

values = run_mesh_model(layout, benchmark, config, keras_model, raw, y)


def relative(a, b):
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


mesh_gradients = benchmark.mesh_model(config, split).keras_weights(values["gradients"])
result = {"outputs": relative(values["outputs"], keras_predictions.numpy()),
          "gradients": [relative(m, k) for m, k in zip(mesh_gradients, keras_gradients)],
          "gradient_shapes_match": all(m.shape == k.shape for m, k in zip(mesh_gradients, keras_gradients)),
          "halo_reads": values["halo_reads"], "convolutions": values["convolutions"],
          "step_collectives": values["step_collectives"], "allreduce_tensors": values["allreduce_tensors"],
          "optimizer_floats": values["optimizer_floats"],
          "weight_floats": int(sum(w.size for w in keras_model.get_weights())),
          "horovod_cycle_time": os.environ.get("HOROVOD_CYCLE_TIME"),
          "processes": layout.topology.size, "groups": groups}
if layout.topology.is_root:
    with open(out_path, "w") as f:
        json.dump(result, f)
layout.barrier()
