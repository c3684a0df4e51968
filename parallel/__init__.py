"""Process topology and parallel layouts (data-parallel now; spatial and
hybrid model-parallel layouts plug in through the same ``Layout`` interface)."""

# Layouts training can run today (importable without TensorFlow, for launch/).
TRAINABLE_LAYOUTS = ("single", "data")
