"""Adam, AdamW and LAMB with the reference's (PyTorch / apex) update rules.

The update is written once, in ``adam_family_update``; the Keras optimizer
and the mesh models' update rule (``AdamFamilyRule``, for
``parallel.mesh.optimizer_shards``) both call it, so the layouts train identically.
Keras' own Adam differs: its epsilon is added before bias correction.
"""
from __future__ import annotations

from typing import Any

import tensorflow as tf


def adam_family_update(kind: str, weight: Any, grad: Any, m: Any, v: Any, lr: Any, beta1: float, beta2: float,
                       eps: float, weight_decay: float, correction1: Any,
                       correction2: Any) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """(new weight, new m, new v). ``correction1/2`` are 1 / (1 - beta^t).
    Adam adds L2 decay to the gradient; AdamW decays the weight decoupled;
    LAMB scales each tensor's step by the trust ratio ||w|| / ||step||."""
    if kind == "Adam" and weight_decay:
        grad = grad + weight * weight_decay
    m = m * beta1 + grad * (1.0 - beta1)
    v = v * beta2 + grad * grad * (1.0 - beta2)
    direction = (m * correction1) / (tf.sqrt(v * correction2) + eps)
    if kind == "Adam":
        return weight - direction * lr, m, v
    direction = direction + weight * weight_decay
    if kind == "AdamW":
        return weight - direction * lr, m, v
    return weight - direction * (lr * _trust_ratio(tf.norm(weight), tf.norm(direction))), m, v


def _trust_ratio(weight_norm: tf.Tensor, direction_norm: tf.Tensor) -> tf.Tensor:
    """||w|| / ||u||, or 1 where either is 0."""
    return tf.where((weight_norm > 0) & (direction_norm > 0), weight_norm / direction_norm, 1.0)


class AdamFamily(tf.keras.optimizers.Optimizer):
    """Keras optimizer running ``adam_family_update``; LAMB clips the global
    gradient norm to ``max_grad_norm`` first, as apex's FusedLAMB."""

    def __init__(self, kind: str, learning_rate: float, betas: tuple[float, float], eps: float,
                 weight_decay: float, max_grad_norm: float | None = None):
        super().__init__(name=kind, global_clipnorm=max_grad_norm if kind == "LAMB" else None, jit_compile=False)
        self.kind = kind
        self._learning_rate = self._build_learning_rate(learning_rate)
        self.beta1, self.beta2 = betas
        self.eps, self.decay = eps, weight_decay

    def build(self, var_list):
        super().build(var_list)
        if getattr(self, "_slots_built", False):
            return
        self._slots_built = True
        self._m = [self.add_variable_from_reference(v, "m") for v in var_list]
        self._v = [self.add_variable_from_reference(v, "v") for v in var_list]

    def update_step(self, gradient, variable):
        index = self._index_dict[self._var_key(variable)]
        m, v = self._m[index], self._v[index]
        step = tf.cast(self.iterations + 1, variable.dtype)
        lr = tf.cast(self.learning_rate, variable.dtype)
        weight, new_m, new_v = adam_family_update(
            self.kind, variable, gradient, m, v, lr, self.beta1, self.beta2, self.eps, self.decay,
            1.0 / (1.0 - tf.pow(self.beta1, step)), 1.0 / (1.0 - tf.pow(self.beta2, step)))
        m.assign(new_m)
        v.assign(new_v)
        variable.assign(weight)


class AdamFamilyRule:
    """``adam_family_update`` as the mesh models' ``parallel.mesh.optimizer_shards.UpdateRule``,
    with LAMB's global gradient clipping (as Keras' ``global_clipnorm``)."""

    slots = ("m", "v")

    def __init__(self, kind: str, learning_rate: tf.Tensor, betas: tuple[float, float], eps: float,
                 weight_decay: float, max_grad_norm: float | None = None):
        self.kind, self.learning_rate = kind, learning_rate
        self.beta1, self.beta2 = betas
        self.eps, self.decay, self.max_grad_norm = eps, weight_decay, max_grad_norm
        self.elementwise = kind != "LAMB"        # LAMB's trust ratio and clipping take whole-tensor norms

    def prepare(self, gradients: list[tf.Tensor]) -> tuple[list[tf.Tensor], list[tf.Operation]]:
        step = tf.compat.v1.get_variable("adam_step", [], tf.float32, tf.zeros_initializer(), trainable=False)
        new_step = step + 1.0
        self.correction1 = 1.0 / (1.0 - tf.pow(self.beta1, new_step))
        self.correction2 = 1.0 / (1.0 - tf.pow(self.beta2, new_step))
        if self.kind == "LAMB":
            gradients, _ = tf.clip_by_global_norm(gradients, self.max_grad_norm)
        return gradients, [tf.compat.v1.assign(step, new_step)]

    def update(self, weight: tf.Tensor, gradient: tf.Tensor,
               slots: list[tf.Variable]) -> tuple[tf.Tensor, list[tf.Tensor]]:
        new_weight, m, v = adam_family_update(self.kind, weight, gradient, *slots, self.learning_rate, self.beta1,
                                              self.beta2, self.eps, self.decay, self.correction1, self.correction2)
        return new_weight, [m, v]
