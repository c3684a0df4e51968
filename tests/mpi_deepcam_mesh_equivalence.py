"""Run under ``mpirun -np G*D*H``: the Mesh TF DeepCAM, G data-parallel
groups each splitting samples DxH (height x width), against the Keras model
with the same weights on the same batch (2 samples per group), both in
training mode (batch statistics). Rank 0 writes the relative differences of
the logits, the loss and every weight's gradient (JSON).

The model is small but has every layer kind of the full one, and ASPP rates
(2, 3) wider than the 2-row blocks of a 2-way height split at 64x96, so
halos come from blocks further away.

Usage: mpi_deepcam_mesh_equivalence.py DxH OUT.json
"""
import json
import sys

from core.runtime import configure_environment

configure_environment()

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from deepcam.benchmark import DeepCAM  # noqa: E402
from deepcam.mesh_model import DeepCAMMesh  # noqa: E402
from parallel.mesh import MeshParallel  # noqa: E402
from parallel.topology import parse_split  # noqa: E402
from tests.conftest import REPO  # noqa: E402
from tests.mesh_harness import run_mesh_model  # noqa: E402

split, out_path = parse_split(sys.argv[1]), sys.argv[2]
benchmark = DeepCAM()
config = benchmark.load_config(REPO / "deepcam" / "configs" / "mini.yaml", {
    "data.sample_shape": [64, 96, 4], "model.entry_channels": [4, 8], "model.block_channels": [8, 12, 16],
    "model.n_middle_blocks": 1, "model.exit_channels": [16, 16, 16, 24], "model.aspp_channels": 8,
    "model.aspp_rates": [2, 3], "model.low_level_channels": 4, "model.decoder_channels": 8})
shape = config.data.sample_shape

layout = MeshParallel("hybrid", split)
groups, batch = layout.data_shards, 2 * layout.data_shards
tf.keras.utils.set_random_seed(7)
keras_model = benchmark.build_model(config)
rng = np.random.default_rng(0)
x = rng.uniform(0, 1, size=[batch] + shape).astype(np.float32)
y = rng.integers(0, 3, size=[batch] + shape[:2]).astype(np.int32)
# Keras' batch norm is per replica: each group's 2 samples are one replica.
keras_logits, keras_losses, keras_gradients = [], [], []
for g in range(groups):
    with tf.GradientTape() as tape:
        logits = keras_model(x[2 * g:2 * g + 2], training=True)
        loss = benchmark.loss(y[2 * g:2 * g + 2], logits)
    keras_logits.append(logits.numpy())
    keras_losses.append(float(loss))
    keras_gradients.append([t.numpy() for t in tape.gradient(loss, keras_model.trainable_variables)])
keras_logits = np.concatenate(keras_logits)
keras_gradients = [np.mean(per_group, axis=0) for per_group in zip(*keras_gradients)]
trainable = [w.name.split(":")[0] for w in keras_model.trainable_variables]

model = DeepCAMMesh(config, split)
values = run_mesh_model(layout, model, keras_model, x, y, local_batch=2, training=True)


def relative(a, b):
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-30))


# [groups, batch, hb, wb, h, w, c] -> [groups * batch, H, W, c]
g, b, hb, wb, h, w, c = values["outputs"].shape
mesh_logits = values["outputs"].transpose(0, 1, 2, 4, 3, 5, 6).reshape(g * b, hb * h, wb * w, c)
mesh_gradients = values["gradients"]
mesh_flat = [mesh_gradients[name].reshape(k.shape) for name, k in zip(trainable, keras_gradients)]
result = {"logits": relative(mesh_logits, keras_logits),
          "all_gradients": relative(np.concatenate([m.ravel() for m in mesh_flat]),
                                    np.concatenate([k.ravel() for k in keras_gradients])),
          "gradient_norms": {name: float(np.linalg.norm(k)) for name, k in zip(trainable, keras_gradients)},
          "loss": abs(float(values["loss"]) - np.mean(keras_losses)) / np.mean(keras_losses),
          "gradients": {name: relative(m, k) for name, m, k in zip(trainable, mesh_flat, keras_gradients)},
          "gradient_errors": {name: float(np.linalg.norm(m - k))
                              for name, m, k in zip(trainable, mesh_flat, keras_gradients)},
          "dilations": [config.model.exit_dilation] + config.model.aspp_rates,
          "processes": layout.topology.size, "groups": groups}
if layout.topology.is_root:
    with open(out_path, "w") as f:
        json.dump(result, f, indent=1)
layout.barrier()
