"""What the Mesh TF equivalence scripts share: lower a benchmark's mesh model
on this rank, feed it this rank's block of a batch, and fetch the full
outputs, loss and weight gradients."""
from __future__ import annotations

from typing import Any

import numpy as np
import tensorflow as tf

from parallel.mesh import MeshParallel, named_weights
from parallel.spmd_mesh import initial_feed, mtf


def run_mesh_model(layout: MeshParallel, model: Any, keras_model: tf.keras.Model, x: np.ndarray, y: np.ndarray,
                   local_batch: int, training: bool) -> dict:
    """``x``, ``y``: the global batch, each group's ``local_batch`` samples in
    group order. Returns {"outputs", "loss", "gradients": {name: value}}."""
    initial = named_weights(keras_model)
    group = slice(layout.group * local_batch, (layout.group + 1) * local_batch)
    x_block, y_block = model.block(x[group], y[group], *layout.block_coordinates)
    graph = tf.Graph()
    with graph.as_default():
        mesh_graph = mtf.Graph()
        mesh = mtf.Mesh(mesh_graph, "mesh")
        impl = layout.mesh_impl(model.layout_rules)
        x_shape, y_shape = model.input_shapes(layout.data_shards, local_batch)
        inputs = mtf.import_laid_out_tensor(mesh, impl.LaidOutTensor([tf.constant(x_block, tf.float32)]), x_shape)
        labels = mtf.import_laid_out_tensor(mesh, impl.LaidOutTensor([tf.constant(y_block, tf.float32)]), y_shape)
        outputs = model.forward(inputs, initial, training=training)
        loss = model.loss(labels, outputs)
        variables = mesh_graph.trainable_variables
        gradients = mtf.gradients([loss], [v.outputs[0] for v in variables])
        lowering = mtf.Lowering(mesh_graph, {mesh: impl}, autostack=False)
        fetch = {"outputs": lowering.export_to_tf_tensor(outputs), "loss": lowering.export_to_tf_tensor(loss),
                 "gradients": {v.name: lowering.export_to_tf_tensor(g) for v, g in zip(variables, gradients)}}
        initialise = tf.compat.v1.global_variables_initializer()
        copy_in = lowering.copy_masters_to_slices()
    with tf.compat.v1.Session(graph=graph) as session:
        session.run(initialise, initial_feed(graph))
        session.run(copy_in)
        return session.run(fetch)
