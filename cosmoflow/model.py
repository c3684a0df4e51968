"""The CosmoFlow model (MLPerf HPC reference architecture, v1.0 onward).

Five Conv3D('same') -> LeakyReLU -> MaxPool3D(2) blocks with 32·2^i channels,
Flatten, Dense 128 / 64 with LeakyReLU and dropout 0.5, Dense 4 tanh scaled by
1.2. Kernel size and widths are configurable (the v0.7 model used kernel 2).
"""
from __future__ import annotations

import tensorflow as tf

from cosmoflow.config import check_pooling

LEAKY_ALPHA = 0.3  # Keras' LeakyReLU default, as in the reference


def build_model(input_shape: list[int], target_size: int = 4, kernel_size: int = 3, conv_size: int = 32,
                n_conv_layers: int = 5, fc1_size: int = 128, fc2_size: int = 64, dropout: float = 0.5,
                l2: float = 0.0) -> tf.keras.Model:
    """Build the CosmoFlow regression CNN for (D, H, W, C) inputs."""
    check_pooling(list(input_shape[:3]), n_conv_layers)
    regulariser = tf.keras.regularizers.L2(l2) if l2 > 0 else None
    inputs = tf.keras.Input(shape=tuple(input_shape), name="volume")
    h = inputs
    for i in range(n_conv_layers):
        h = tf.keras.layers.Conv3D(conv_size * 2 ** i, kernel_size, padding="same", name=f"conv{i + 1}")(h)
        h = tf.keras.layers.LeakyReLU(LEAKY_ALPHA)(h)
        h = tf.keras.layers.MaxPool3D(2, name=f"pool{i + 1}")(h)
    h = tf.keras.layers.Flatten()(h)
    for j, width in enumerate((fc1_size, fc2_size)):
        h = tf.keras.layers.Dense(width, kernel_regularizer=regulariser, name=f"fc{j + 1}")(h)
        h = tf.keras.layers.LeakyReLU(LEAKY_ALPHA)(h)
        if dropout > 0:
            h = tf.keras.layers.Dropout(dropout)(h)
    h = tf.keras.layers.Dense(target_size, activation="tanh", kernel_regularizer=regulariser, name="output")(h)
    outputs = tf.keras.layers.Rescaling(1.2, name="scale")(h)
    return tf.keras.Model(inputs, outputs, name="cosmoflow")
