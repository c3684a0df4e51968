"""Run under ``mpirun -np G*D*H``: the Mesh TF DeepCAM, G data-parallel
groups each splitting samples DxH (height x width), against the Keras model
with the same weights on the same batch (2 samples per group), both in
training mode (batch statistics). Rank 0 writes (JSON) the relative errors
of the logits, the loss and every weight's gradient, of the split model and
of the float32 Keras model, both against the Keras model in float64: the
split model must be as accurate as the unsplit one. Then both take one LAMB
step: rank 0 also writes how far the split model's weight update is from
Keras', and the optimizer state each rank keeps (its share of the slots).

The model is small but has every layer kind of the full one, and ASPP rates
(2, 3) wider than the 2-row blocks of a 2-way height split at 64x96, so
halos come from blocks further away; rate 6 overreaches every field tried,
so that branch runs as the 1x1 convolution it reduces to. Fields whose blocks cannot be halved
four times are gathered on the way down and cut back into blocks on the way
up (at 64x48 split 1x2 before the last halving; at 48x96 split 8x1 before
the second, so that the decoder's low-level features are whole too).

Usage: mpi_deepcam_mesh_equivalence.py DxH OUT.json [HEIGHTxWIDTH, default 64x96]
"""
import json
import sys
import tempfile
from pathlib import Path

from core.runtime import configure_environment

configure_environment()

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from deepcam.benchmark import DeepCAM  # noqa: E402
from deepcam.data import write_stats  # noqa: E402
from deepcam.facts import STATS_FILE  # noqa: E402
from parallel.mesh.layout import MeshParallel  # noqa: E402
from parallel.topology import parse_split  # noqa: E402
from tests.helpers import REPO  # noqa: E402
from tests.mesh_harness import run_mesh_model  # noqa: E402

split, out_path = parse_split(sys.argv[1]), sys.argv[2]
field = [int(n) for n in (sys.argv[3] if len(sys.argv) > 3 else "64x96").split("x")]
benchmark = DeepCAM()
config = benchmark.load_config(REPO / "deepcam" / "configs" / "mini.yaml", {
    "data.sample_shape": field + [4], "model.entry_channels": [4, 8], "model.block_channels": [8, 12, 16],
    "model.n_middle_blocks": 1, "model.exit_channels": [16, 16, 16, 24], "model.aspp_channels": 8,
    "model.aspp_rates": [2, 3, 6], "model.low_level_channels": 4, "model.decoder_channels": 8,
    "data.batch_size": 2, "data.data_dir": tempfile.mkdtemp()})
shape = config.data.sample_shape
# The split model takes the fields as stored and scales its blocks by the
# dataset's stats; the Keras model here takes the scaled fields.
minval, maxval = np.full(shape[2], -1.0), np.full(shape[2], 3.0)
write_stats(Path(config.data.data_dir) / STATS_FILE, minval, maxval)

layout = MeshParallel("hybrid", split)
groups, batch = layout.data_shards, 2 * layout.data_shards
tf.keras.utils.set_random_seed(7)
keras_model = benchmark.build_model(config)
rng = np.random.default_rng(0)
raw = rng.uniform(-1, 3, size=[batch] + shape).astype(np.float32)
x = ((raw - minval) / (maxval - minval)).astype(np.float32)
y = rng.integers(0, 3, size=[batch] + shape[:2]).astype(np.int32)


def keras_pass(model, dtype):
    """Logits, mean loss and gradients of the Keras model in ``dtype``; its
    batch norm is per replica: each group's 2 samples are one replica."""
    logits, losses, gradients = [], [], []
    for g in range(groups):
        with tf.GradientTape() as tape:
            out = model(x[2 * g:2 * g + 2].astype(dtype), training=True)
            loss = benchmark.loss(y[2 * g:2 * g + 2], out)
        logits.append(out.numpy().astype(np.float64))
        losses.append(float(loss))
        gradients.append([t.numpy().astype(np.float64) for t in tape.gradient(loss, model.trainable_variables)])
    return np.concatenate(logits), np.mean(losses), [np.mean(per_group, axis=0) for per_group in zip(*gradients)]


# The float64 model is the reference both float32 models are measured against.
keras32 = keras_pass(keras_model, np.float32)
tf.keras.backend.set_floatx("float64")
keras64_model = benchmark.build_model(config)
keras64_model.set_weights([w.astype(np.float64) for w in keras_model.get_weights()])
reference = keras_pass(keras64_model, np.float64)
tf.keras.backend.set_floatx("float32")
trainable = [w.name.split(":")[0] for w in keras_model.trainable_variables]

values = run_mesh_model(layout, benchmark, config, keras_model, raw, y, learning_rate=config.optimizer.lr)
keras_updated = benchmark.build_model(config)
keras_updated.set_weights(keras_model.get_weights())
benchmark.make_optimizer(config).apply_gradients(
    zip([tf.constant(g, tf.float32) for g in keras32[2]], keras_updated.trainable_variables))


def relative(a, b):
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-30))


def errors(logits, loss, gradients):
    """Relative errors against the float64 reference."""
    flat = np.concatenate([g.ravel() for g in gradients])
    return {"logits": relative(logits, reference[0]), "loss": abs(loss - reference[1]) / reference[1],
            "all_gradients": relative(flat, np.concatenate([r.ravel() for r in reference[2]])),
            "gradient_errors": {name: float(np.linalg.norm(m - r))
                                for name, m, r in zip(trainable, gradients, reference[2])}}


# [groups, batch, hb, wb, h, w, c] -> [groups * batch, H, W, c]
g, b, hb, wb, h, w, c = values["outputs"].shape
mesh_logits = values["outputs"].transpose(0, 1, 2, 4, 3, 5, 6).reshape(g * b, hb * h, wb * w, c)
mesh_flat = [values["gradients"][name].reshape(r.shape) for name, r in zip(trainable, reference[2])]
is_trainable = [any(w is t for t in keras_model.trainable_variables) for w in keras_model.weights]
start, mesh_new, keras_new = ([w for w, t in zip(weights, is_trainable) if t] for weights in (
    keras_model.get_weights(), values["updated"], keras_updated.get_weights()))
mesh_step, keras_step = (np.concatenate([(new - old).ravel() for new, old in zip(updated, start)])
                         for updated in (mesh_new, keras_new))
result = {"update": relative(mesh_step, keras_step), "optimizer_floats": values["optimizer_floats"],
          "trainable_floats": int(sum(w.size for w in start)),
          "mesh": errors(mesh_logits, float(values["loss"]), mesh_flat), "keras": errors(*keras32),
          "gradient_norms": {name: float(np.linalg.norm(r)) for name, r in zip(trainable, reference[2])},
          "dilations": [config.model.exit_dilation] + config.model.aspp_rates,
          "halo_copies_kept": values["halo_copies_kept"], "halo_reads": values["halo_reads"],
          "processes": layout.topology.size, "groups": groups}
if layout.topology.is_root:
    with open(out_path, "w") as f:
        json.dump(result, f, indent=1)
layout.barrier()
