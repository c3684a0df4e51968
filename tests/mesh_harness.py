"""What the Mesh TF equivalence scripts share: the trainer's own lowering of
a benchmark's mesh model on this rank, started from given Keras weights and
fed this rank's block of a batch, and the full outputs, loss and weight
gradients of its training step (before any update)."""
from __future__ import annotations

from typing import Any

import numpy as np
import tensorflow as tf

from core.benchmark import Benchmark
from parallel.mesh import MeshParallel, MeshTrainer, named_weights


def run_mesh_model(layout: MeshParallel, benchmark: Benchmark, config: Any, keras_model: tf.keras.Model,
                   x: np.ndarray, y: np.ndarray) -> dict:
    """``x``, ``y``: the global batch, each group's ``config.data.batch_size``
    samples in group order. Returns {"outputs", "loss", "gradients": {name: value}}."""
    trainer = MeshTrainer(benchmark, config, layout, seed=0, initial=named_weights(keras_model))
    local_batch = config.data.batch_size
    group = slice(layout.group * local_batch, (layout.group + 1) * local_batch)
    fetch = {"outputs": trainer.export(trainer.outputs), "loss": trainer.export(trainer.loss),
             "gradients": {v.name: trainer.export(g) for v, g in zip(trainer.variables, trainer.gradients)}}
    return trainer.session.run(fetch, trainer.feed(x[group], y[group]))
