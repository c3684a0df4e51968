"""Adam, AdamW and LAMB with the reference's (PyTorch / apex) update rules.

The update is written once, in ``adam_family_update``, on any tensors that
support arithmetic; the Keras optimizer here and the Mesh TensorFlow one in
``deepcam.mesh_model`` both call it, so the layouts train identically.
Keras' own Adam differs: its epsilon is added before bias correction.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import tensorflow as tf

KINDS = ("Adam", "AdamW", "LAMB")


@dataclass
class TensorOps:
    """The few functions the update needs beyond arithmetic operators."""
    sqrt: Callable[[Any], Any]
    norm: Callable[[Any], Any]                     # L2 norm of a whole tensor, a scalar
    trust_ratio: Callable[[Any, Any], Any]         # ||w|| / ||u||, or 1 where either is 0


def adam_family_update(kind: str, weight: Any, grad: Any, m: Any, v: Any, lr: Any, beta1: float, beta2: float,
                       eps: float, weight_decay: float, correction1: Any, correction2: Any,
                       ops: TensorOps) -> tuple[Any, Any, Any]:
    """(new weight, new m, new v). ``correction1/2`` are 1 / (1 - beta^t).
    Adam adds L2 decay to the gradient; AdamW decays the weight decoupled;
    LAMB scales each tensor's step by the trust ratio ||w|| / ||step||."""
    if kind == "Adam" and weight_decay:
        grad = grad + weight * weight_decay
    m = m * beta1 + grad * (1.0 - beta1)
    v = v * beta2 + grad * grad * (1.0 - beta2)
    direction = (m * correction1) / (ops.sqrt(v * correction2) + eps)
    if kind == "Adam":
        return weight - direction * lr, m, v
    direction = direction + weight * weight_decay
    if kind == "AdamW":
        return weight - direction * lr, m, v
    return weight - direction * (lr * ops.trust_ratio(ops.norm(weight), ops.norm(direction))), m, v


def _tf_trust_ratio(weight_norm, direction_norm):
    return tf.where((weight_norm > 0) & (direction_norm > 0), weight_norm / direction_norm, 1.0)


TF_OPS = TensorOps(sqrt=tf.sqrt, norm=tf.norm, trust_ratio=_tf_trust_ratio)


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
            1.0 / (1.0 - tf.pow(self.beta1, step)), 1.0 / (1.0 - tf.pow(self.beta2, step)), TF_OPS)
        m.assign(new_m)
        v.assign(new_v)
        variable.assign(weight)
