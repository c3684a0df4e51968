"""The spatial and hybrid layouts' Mesh TensorFlow stack, SPMD over Horovod:

- ``layout``: the layout (``MeshParallel``), the mesh over the job's ranks;
- ``trainer``: the mesh model's protocol, its trainer and initial weights;
- ``horovod_impl``: the mesh implementation whose collectives are Horovod's;
- ``ops``: Mesh TF operations for block-split tensors;
- ``halos``: a block's context and its halo exchange;
- ``layers``: the block layers the benchmarks' mesh models are built from;
- ``optimizer_shards``: the optimizer state sharded across a sample's ranks.
"""
