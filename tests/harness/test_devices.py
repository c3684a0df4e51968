"""The GPU is chosen as a layout is built, before TensorFlow's context
starts (choosing it later raises on a multi-GPU node). Without a GPU here the
order is checked directly: building a layout after the first op must fail."""
from __future__ import annotations

import json
import os
import re
import subprocess

import numpy as np
import pytest

from tests.helpers import PYTHON, REPO, mpirun_python


def _python(code: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([PYTHON, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120,
                          env={**os.environ, **(env or {})})


def test_a_layout_built_after_the_first_tensorflow_op_is_refused():
    late = _python("import tensorflow as tf; tf.constant(1.0) + 1\n"
                   "from parallel.layouts import SingleProcess; SingleProcess()")
    assert late.returncode != 0 and "must be built before the first TensorFlow op" in late.stderr
    early = _python("from parallel.layouts import SingleProcess; layout = SingleProcess()\n"
                    "import tensorflow as tf; tf.constant(1.0) + 1\n"
                    "assert SingleProcess().accelerators == layout.accelerators == 0; print('ok')")
    assert early.returncode == 0 and early.stdout.strip() == "ok", early.stderr[-2000:]


def test_a_rank_told_to_expect_gpus_and_finding_none_stops_in_one_line(tmp_path, tiny_data):
    done = subprocess.run([PYTHON, "-m", "mlperf_hpc.cli", "train", "cosmoflow", "--data", str(tiny_data),
                           "--set", "data.n_train=64", "--set", "data.n_valid=32", "--epochs", "1",
                           "--log", str(tmp_path / "r.log")], capture_output=True, text=True, cwd=REPO,
                          timeout=300, env={**os.environ, "MLPERF_HPC_GPUS_PER_NODE": "4"})
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr[-2000:]
    assert done.stderr.strip().splitlines()[-1].startswith("mlperf-hpc: error: this rank expected a GPU")


@pytest.mark.slow
@pytest.mark.mpi
def test_data_parallel_ranks_choose_their_device_before_tensorflow_starts():
    # Horovod's init, then the choice, then the first op (an allreduce):
    # the data-parallel path in the order the driver uses it.
    code = ("from parallel.layouts import DataParallel, tensorflow_context_started\n"
            "layout = DataParallel()\n"
            "assert not tensorflow_context_started()\n"
            "assert layout.all_ranks(True) and tensorflow_context_started()\n"
            "print(f'rank {layout.topology.rank} accelerators {layout.accelerators}')")  # one write: ranks interleave
    done = mpirun_python(2, "-c", code, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert sorted(re.findall(r"rank \d accelerators \d", done.stdout)) == ["rank 0 accelerators 0",
                                                                         "rank 1 accelerators 0"], done.stdout


STEP_PLACEMENT = """
import json
import tensorflow as tf
from parallel.layouts import KerasTrainer, SingleProcess
from core.benchmark import get_benchmark

layout = SingleProcess()
layout.accelerators = {accelerators}      # what select_accelerator finds on a GPU node
report = {{}}
for name, raw in (("cosmoflow", tf.int16), ("deepcam", tf.float32)):
    benchmark = get_benchmark(name)
    config = benchmark.load_config(None, {{"data.data_dir": "{data_dir}"}})
    trainer = KerasTrainer(benchmark, config, layout)
    shape = [2] + list(config.data.sample_shape)
    labels = tf.TensorSpec([2, 4]) if name == "cosmoflow" else tf.TensorSpec(shape[:3], tf.int32)
    graph = trainer.train_step.get_concrete_function(tf.TensorSpec(shape, raw), labels).graph
    x = graph.inputs[0].name
    # The ops the raw batch flows through first, and those right after them.
    first = [op for op in graph.get_operations() if x in [t.name for t in op.inputs]]
    normalising = first + [op for op in graph.get_operations() if op.type in ("Log1p", "Mul", "Sub")
                           and {{t.op.name for t in op.inputs}} & {{f.name for f in first}}]
    dataset = trainer.device_input(tf.data.Dataset.range(4).batch(2))
    copy = getattr(dataset, "_input_dataset", None)
    report[name] = {{"ops": [[op.type, op.device] for op in normalising],
                    "copied_to": getattr(copy, "_target_device", None)}}
print(json.dumps(report))
"""


@pytest.mark.slow
@pytest.mark.parametrize("accelerators, device", [(1, "/device:GPU:0"), (0, "/device:CPU:0")])
def test_the_step_normalises_raw_batches_on_the_device_that_trains(accelerators, device, tmp_path):
    # DeepCAM reads its stats as the step is traced.
    from deepcam import data as deepcam_data

    deepcam_data.write_stats(tmp_path / deepcam_data.STATS_FILE, np.zeros(16), np.ones(16))
    done = _python(STEP_PLACEMENT.format(accelerators=accelerators, data_dir=tmp_path))
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    for name, kinds in (("cosmoflow", {"Cast", "Log1p"}), ("deepcam", {"Sub", "Mul"})):
        ops = report[name]["ops"]
        # The raw batch goes first into the normalisation, pinned to the device.
        assert kinds <= {kind for kind, _ in ops}, (name, ops)
        assert all(placed == device for kind, placed in ops if kind in kinds), (name, ops)
        # A GPU rank's batches are copied to the GPU ahead of the step.
        assert report[name]["copied_to"] == ("/GPU:0" if accelerators else None), name
