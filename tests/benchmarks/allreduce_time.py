"""Run under mpirun: time Horovod's allreduce of one model's worth of
gradients (the per-step communication of the data-parallel layout)."""
import sys
import time

from core.runtime import configure_environment

configure_environment()

import horovod.tensorflow as hvd  # noqa: E402
import tensorflow as tf  # noqa: E402

n_params, repeats = int(sys.argv[1]), int(sys.argv[2])
hvd.init()
grad = tf.random.normal([n_params])
for _ in range(3):
    hvd.allreduce(grad, op=hvd.Average).numpy()
start = time.perf_counter()
for _ in range(repeats):
    hvd.allreduce(grad, op=hvd.Average).numpy()
elapsed = (time.perf_counter() - start) / repeats
if hvd.rank() == 0:
    print(f"ALLREDUCE_MS {elapsed * 1e3:.3f}")
