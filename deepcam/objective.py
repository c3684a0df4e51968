"""DeepCAM's loss and metric, shared by the Keras and the Mesh TF model."""
from __future__ import annotations

import tensorflow as tf

N_CLASSES = 3            # background, tropical cyclone, atmospheric river
# Class weights frequency^-0.125 of the real dataset, as the reference; the
# loss averages weighted pixel losses over pixels (not over the weights).
CLASS_WEIGHTS = (1.0017299, 2.6146112, 1.7164197)


def weighted_cross_entropy(labels: tf.Tensor, logits: tf.Tensor) -> tf.Tensor:
    """Per-pixel cross-entropy times the class weight of the true class."""
    pixel = tf.nn.sparse_softmax_cross_entropy_with_logits(labels, logits)
    return pixel * tf.gather(tf.constant(CLASS_WEIGHTS, logits.dtype), labels)


def iou_per_sample(labels: tf.Tensor, predicted: tf.Tensor) -> tf.Tensor:
    """Mean over the 3 classes of TP / (TP + FP + FN) for each sample of
    [B, H, W] label maps; a class absent from both counts as 1."""
    scores = []
    for c in range(N_CLASSES):
        truth, guess = tf.equal(labels, c), tf.equal(predicted, c)
        tp = tf.reduce_sum(tf.cast(truth & guess, tf.float32), axis=[1, 2])
        union = tf.reduce_sum(tf.cast(truth | guess, tf.float32), axis=[1, 2])
        scores.append(tf.where(union > 0, tp / tf.maximum(union, 1.0), 1.0))
    return tf.add_n(scores) / N_CLASSES
