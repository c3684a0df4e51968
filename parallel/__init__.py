"""Process topology and parallel layouts: single process, data-parallel
(Horovod), and spatial / hybrid model-parallel (Mesh TensorFlow over Horovod)."""

# Layouts training can run today (importable without TensorFlow, for launch/).
TRAINABLE_LAYOUTS = ("single", "data", "spatial", "hybrid")
