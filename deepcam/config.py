"""DeepCAM config schema (YAML sections: mlperf, data, model, optimizer,
lr_schedule, train), with the reference's hyperparameter names."""
from __future__ import annotations

from dataclasses import dataclass, field

from mlperf_hpc.config import SubmissionInfo


@dataclass
class DataConfig:
    data_dir: str = "data/deepcam-full"
    n_train: int = 121266
    n_valid: int = 15158
    sample_shape: list[int] = field(default_factory=lambda: [768, 1152, 16])   # H, W, C
    batch_size: int = 2               # per data-parallel replica
    n_epochs: int = 64
    shuffle: bool = True
    prefetch: int = 2
    n_parallel_reads: int = 4
    stage_dir: str | None = None      # node-local copy of this rank's shard


@dataclass
class ModelConfig:
    """DeepLabV3+ with an Xception-style encoder at output stride 16."""
    entry_channels: list[int] = field(default_factory=lambda: [32, 64])
    block_channels: list[int] = field(default_factory=lambda: [128, 256, 728])   # each halves H and W
    n_middle_blocks: int = 16
    exit_channels: list[int] = field(default_factory=lambda: [1024, 1536, 1536, 2048])
    exit_dilation: int = 2
    aspp_channels: int = 256
    aspp_rates: list[int] = field(default_factory=lambda: [6, 12, 18])
    low_level_channels: int = 48
    decoder_channels: int = 256


@dataclass
class OptimizerConfig:
    name: str = "LAMB"                # LAMB, AdamW or Adam
    lr: float = 0.0055
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    eps: float = 1.0e-6
    weight_decay: float = 0.01
    max_grad_norm: float = 1.0        # LAMB's global gradient clipping
    gradient_accumulation_frequency: int = 1


@dataclass
class LRScheduleConfig:
    type: str = "multistep"           # multistep or cosine_annealing
    warmup_steps: int = 400
    warmup_factor: float = 1.0
    milestones: list[int] = field(default_factory=lambda: [800])   # steps after warmup
    decay_rate: float = 0.1
    t_max: int = 8000                 # cosine_annealing: steps after warmup
    eta_min: float = 0.0


@dataclass
class TrainConfig:
    target_iou: float = 0.82
    seed: int | None = None            # null: a fresh seed per run


@dataclass
class DeepCAMConfig:
    mlperf: SubmissionInfo = field(default_factory=SubmissionInfo)
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    lr_schedule: LRScheduleConfig = field(default_factory=LRScheduleConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
