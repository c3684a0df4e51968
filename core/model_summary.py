"""Per-layer parameters and forward FLOPs of a benchmark's Keras model: what
``mlperf-hpc model`` prints, and what benchmark scripts convert samples/s
into GFLOP/s with. FLOPs are 2 per multiply-add of the convolutions and
dense layers; batch norm, activations and additions are left out, as in the
references' published figures."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any


@dataclass
class LayerRow:
    name: str
    kind: str
    output_shape: tuple
    parameters: int            # trainable
    forward_flops: float       # per sample


def _macs(layer: Any) -> int:
    """Multiply-adds of one sample through ``layer`` (0 for layers without weights to multiply)."""
    import tensorflow as tf

    if hasattr(layer, "forward_macs"):                       # a layer that knows its own (DeepCAM's transposed conv)
        return layer.forward_macs()
    out = layer.output.shape[1:]
    if isinstance(layer, tf.keras.layers.DepthwiseConv2D):
        return math.prod(layer.kernel_size) * math.prod(out)
    if isinstance(layer, (tf.keras.layers.Conv1D, tf.keras.layers.Conv2D, tf.keras.layers.Conv3D)):
        cin = layer.input.shape[-1] // layer.groups
        return math.prod(layer.kernel_size) * cin * math.prod(out)
    if isinstance(layer, tf.keras.layers.Dense):
        return layer.input.shape[-1] * layer.units
    return 0


def layer_table(model: Any) -> list[LayerRow]:
    """One row per layer that has trainable weights or does multiply-adds."""
    rows = []
    for layer in model.layers:
        params = sum(math.prod(w.shape) for w in layer.trainable_weights)
        macs = _macs(layer)
        if params or macs:
            rows.append(LayerRow(layer.name, type(layer).__name__, tuple(layer.output.shape[1:]), int(params),
                                 2.0 * macs))
    return rows


def trainable_parameters(model: Any) -> int:
    return int(sum(math.prod(w.shape) for w in model.trainable_weights))


def forward_flops(model: Any) -> float:
    """FLOPs of one sample's forward pass (a training step costs about 3x)."""
    return sum(row.forward_flops for row in layer_table(model))
