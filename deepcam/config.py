"""DeepCAM config schema (YAML sections: mlperf, data, model, optimizer,
lr_schedule, train), with the reference's hyperparameter names, the valid
range of every value and the rules that span values."""
from __future__ import annotations

from dataclasses import dataclass, field

from core import config as base
from core.config import ranged
from core.errors import HarnessError

CLOSED_TARGET = 0.82     # val IoU, the closed division's quality target

OUTPUT_STRIDE = 16           # the encoder halves H and W four times


@dataclass
class DataConfig(base.DataConfig):
    data_dir: str = "data/deepcam-full"
    n_train: int = 121266
    n_valid: int = 15158
    sample_shape: list[int] = ranged(factory=lambda: [768, 1152, 16], minimum=1, length=3)   # H, W, C
    batch_size: int = 2
    n_epochs: int = 64
    prefetch: int = 2
    n_parallel_reads: int = 4


@dataclass
class ModelConfig:
    """DeepLabV3+ with an Xception-style encoder at output stride 16."""
    entry_channels: list[int] = ranged(factory=lambda: [32, 64], minimum=1, length=2)
    block_channels: list[int] = ranged(factory=lambda: [128, 256, 728], minimum=1, length=3)   # each halves H, W
    n_middle_blocks: int = ranged(16, minimum=0)
    exit_channels: list[int] = ranged(factory=lambda: [1024, 1536, 1536, 2048], minimum=1, length=4)
    exit_dilation: int = ranged(2, minimum=1)
    aspp_channels: int = ranged(256, minimum=1)
    aspp_rates: list[int] = ranged(factory=lambda: [6, 12, 18], minimum=1)
    low_level_channels: int = ranged(48, minimum=1)
    decoder_channels: int = ranged(256, minimum=1)


@dataclass
class OptimizerConfig:
    name: str = ranged("LAMB", one_of=("LAMB", "AdamW", "Adam"))
    lr: float = ranged(0.0055, above=0)
    betas: list[float] = ranged(factory=lambda: [0.9, 0.999], minimum=0, below=1, length=2)
    eps: float = ranged(1.0e-6, above=0)
    weight_decay: float = ranged(0.01, minimum=0)
    max_grad_norm: float = ranged(1.0, above=0)    # LAMB's global gradient clipping
    gradient_accumulation_frequency: int = ranged(1, minimum=1)


@dataclass
class LRScheduleConfig:
    type: str = ranged("multistep", one_of=("multistep", "cosine_annealing"))
    warmup_steps: int = ranged(400, minimum=0)
    warmup_factor: float = ranged(1.0, minimum=1)    # the rules ask for >= 1
    milestones: list[int] = ranged(factory=lambda: [800], minimum=1)   # steps after warmup
    decay_rate: float = ranged(0.1, above=0, maximum=1)
    t_max: int = ranged(8000, minimum=1)             # cosine_annealing: steps after warmup
    eta_min: float = ranged(0.0, minimum=0)


@dataclass
class TrainConfig(base.TrainConfig):
    target: float = ranged(CLOSED_TARGET, minimum=0, maximum=1)    # val IoU


@dataclass
class DeepCAMConfig(base.BenchmarkConfig):
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    lr_schedule: LRScheduleConfig = field(default_factory=LRScheduleConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def validate(self, source: str) -> None:
        super().validate(source)
        check_shape(*self.data.sample_shape[:2])
        if self.optimizer.gradient_accumulation_frequency != 1:
            raise HarnessError(f"config {source}: optimizer.gradient_accumulation_frequency="
                               f"{self.optimizer.gradient_accumulation_frequency} is not supported; use 1 and a "
                               f"larger batch")

    def check_run(self, split: tuple[int, int], data_groups: int, name: base.KeyNamer = str) -> None:
        check_shape(*self.data.sample_shape[:2], split)
        d = self.data
        if (d.n_train // data_groups) // d.batch_size < 1:
            raise HarnessError(f"{name('data.n_train')}={d.n_train} gives no full batch of "
                               f"{name('data.batch_size')}={d.batch_size} on each of {data_groups} replicas: raise "
                               f"the sample count or lower the batch")


def check_shape(height: int, width: int, split: tuple[int, int] = (1, 1)) -> None:
    """The encoder halves H and W four times and the decoder doubles them
    back: each side must divide by the output stride, and by its split.
    (A split whose blocks become too small to halve is gathered there:
    ``deepcam.mesh_model``.)"""
    for axis, size, parts in (("height", height, split[0]), ("width", width, split[1])):
        if size % parts:
            raise HarnessError(f"the split {parts} does not divide the {axis} {size}: choose a split that does")
        if size % OUTPUT_STRIDE:
            raise HarnessError(f"{axis} {size} is not a multiple of the output stride {OUTPUT_STRIDE}: "
                               f"use sides that are multiples of {OUTPUT_STRIDE}")
