"""CosmoFlow config schema (YAML sections: mlperf, data, model, optimizer,
lr_schedule, train), mirroring the MLPerf HPC reference's cosmo.yaml, with
the valid range of every value and the rules that span values."""
from __future__ import annotations

from dataclasses import dataclass, field

from core import config as base
from core.config import ranged
from core.errors import HarnessError

CLOSED_TARGET = 0.124    # val MAE, the closed division's quality target


@dataclass
class DataConfig(base.DataConfig):
    data_dir: str = "data/cosmoflow"
    format: str = ranged("tfrecord", one_of=("tfrecord", "hdf5"))   # tfrecord: the reference
    compression: str | None = ranged("GZIP", one_of=("GZIP", "ZLIB"))  # of the TFRecords; null: none
    n_train: int = 524288
    n_valid: int = 65536
    samples_per_file: int = ranged(1, minimum=1)
    sample_shape: list[int] = ranged(factory=lambda: [128, 128, 128, 4], minimum=1, length=4)  # D, H, W, C
    batch_size: int = 4
    n_epochs: int = 128
    apply_log: bool = True            # log(x + 1), as the reference
    prefetch: int = 4
    n_parallel_reads: int = 4


@dataclass
class ModelConfig:
    kernel_size: int = ranged(3, minimum=1)      # 2 in the v0.7 model
    conv_size: int = ranged(32, minimum=1)       # channels of the first conv; doubled per layer
    n_conv_layers: int = ranged(5, minimum=1)
    fc1_size: int = ranged(128, minimum=1)
    fc2_size: int = ranged(64, minimum=1)
    dropout: float = ranged(0.5, minimum=0, below=1)
    l2: float = ranged(0.0, minimum=0)           # on dense kernels; logged as opt_weight_decay


@dataclass
class OptimizerConfig:
    name: str = ranged("SGD", one_of=("SGD",))   # the closed division's optimizer
    momentum: float = ranged(0.9, minimum=0, below=1)


@dataclass
class LRScheduleConfig:
    base_lr: float = ranged(0.001, above=0)
    base_batch_size: int = ranged(64, minimum=1)
    scaling: str = ranged("linear", one_of=("linear", "sqrt"))
    n_warmup_epochs: int = ranged(4, minimum=0)
    # epoch -> factor of the peak rate from the epoch after it on
    decay_schedule: dict[int, float] = ranged(factory=lambda: {32: 0.25, 64: 0.125}, above=0, maximum=1,
                                              keys=base.Valid(minimum=1))
    # When true, warmup and decay epochs are given at base_batch_size and
    # stretch with the global batch (x global/base), so that they fall at
    # the same optimizer step at any batch. Small models that need a fixed
    # number of steps converge for every batch this way; the stretched
    # epochs are what the log records.
    stretch_with_batch: bool = False


@dataclass
class TrainConfig(base.TrainConfig):
    target: float = ranged(CLOSED_TARGET, minimum=0)     # val MAE


@dataclass
class CosmoFlowConfig(base.BenchmarkConfig):
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    lr_schedule: LRScheduleConfig = field(default_factory=LRScheduleConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def validate(self, source: str) -> None:
        super().validate(source)
        check_pooling(self.data.sample_shape[:3], self.model.n_conv_layers)

    def check_run(self, split: tuple[int, int], data_groups: int, name: base.KeyNamer = str) -> None:
        d = self.data
        check_split(d.sample_shape[:2], split)
        global_batch = d.batch_size * data_groups
        if d.n_train % global_batch or d.n_train % (data_groups * d.samples_per_file):
            raise HarnessError(f"{name('data.n_train')}={d.n_train} is not divisible by the global batch "
                               f"{global_batch} ({data_groups} replicas x {name('data.batch_size')}={d.batch_size}"
                               f"{f', {d.samples_per_file} samples per file' if d.samples_per_file > 1 else ''}): "
                               f"change one of them")


def check_pooling(spatial: list[int], n_conv_layers: int) -> None:
    """Refuse volumes some layer cannot take: every conv layer's input must halve by pooling."""
    for layer in range(n_conv_layers):
        sizes = [s // 2 ** layer for s in spatial]
        for axis, size in enumerate(sizes):
            if size % 2:
                raise HarnessError(f"conv layer {layer + 1} sees a {'x'.join(map(str, sizes))} volume; axis {axis} "
                                   f"size {size} is not divisible by 2: use a volume side divisible by "
                                   f"{2 ** n_conv_layers} or fewer conv layers")


def check_split(spatial: list[int], split: tuple[int, int]) -> None:
    """A depth x height split must cut the volume into equal blocks. (Blocks
    too thin to pool are gathered by the mesh model, so nothing else limits it.)"""
    for axis, size, parts in (("depth", spatial[0], split[0]), ("height", spatial[1], split[1])):
        if size % parts:
            raise HarnessError(f"the split {parts} does not divide the volume's {axis} {size}: choose a split "
                               f"that divides {'x'.join(map(str, spatial))}")
