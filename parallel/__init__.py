"""Process topology and parallel layouts (data-parallel now; spatial and
hybrid model-parallel layouts plug in through the same ``Layout`` interface)."""
