"""The one compatibility shim Mesh TensorFlow 0.1.21 needs on TensorFlow 2.15.

mesh-tensorflow's ``tpu_variables`` module calls
``ops.register_tensor_conversion_function`` at import time; TF 2.13 moved that
function to ``tensor_conversion_registry``. Aliasing it back is all that is
needed: the rest of Mesh TF runs on TF's compat.v1 graph API unchanged.
Import Mesh TF only through ``mesh_tensorflow()`` so the alias is in place.
"""
from __future__ import annotations

from types import ModuleType


def mesh_tensorflow() -> ModuleType:
    """The ``mesh_tensorflow`` module, importable on TF 2.15."""
    from tensorflow.python.framework import ops, tensor_conversion_registry

    if not hasattr(ops, "register_tensor_conversion_function"):
        ops.register_tensor_conversion_function = tensor_conversion_registry.register_tensor_conversion_function
    import mesh_tensorflow

    return mesh_tensorflow
