"""CosmoFlow config schema (YAML sections: mlperf, data, model, optimizer,
lr_schedule, train), mirroring the MLPerf HPC reference's cosmo.yaml."""
from __future__ import annotations

from dataclasses import dataclass, field

from mlperf_hpc.config import SubmissionInfo


@dataclass
class DataConfig:
    data_dir: str = "data/cosmoflow"
    format: str = "tfrecord"          # tfrecord (reference) or hdf5
    compression: str | None = "GZIP"  # of the TFRecords; null for uncompressed
    n_train: int = 524288
    n_valid: int = 65536
    samples_per_file: int = 1
    sample_shape: list[int] = field(default_factory=lambda: [128, 128, 128, 4])
    batch_size: int = 4               # per data-parallel replica
    n_epochs: int = 128
    apply_log: bool = True            # log(x + 1), as the reference
    shuffle: bool = True
    prefetch: int = 4
    n_parallel_reads: int = 4
    stage_dir: str | None = None      # node-local copy of this rank's shard


@dataclass
class ModelConfig:
    kernel_size: int = 3              # 2 in the v0.7 model
    conv_size: int = 32               # channels of the first conv; doubled per layer
    n_conv_layers: int = 5
    fc1_size: int = 128
    fc2_size: int = 64
    dropout: float = 0.5
    l2: float = 0.0                   # on dense kernels; logged as opt_weight_decay


@dataclass
class OptimizerConfig:
    name: str = "SGD"
    momentum: float = 0.9


@dataclass
class LRScheduleConfig:
    base_lr: float = 0.001
    base_batch_size: int = 64
    scaling: str = "linear"           # linear or sqrt
    n_warmup_epochs: int = 4
    decay_schedule: dict[int, float] = field(default_factory=lambda: {32: 0.25, 64: 0.125})


@dataclass
class TrainConfig:
    target_mae: float = 0.124
    seed: int | None = None            # null: a fresh seed per run


@dataclass
class CosmoFlowConfig:
    mlperf: SubmissionInfo = field(default_factory=SubmissionInfo)
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    lr_schedule: LRScheduleConfig = field(default_factory=LRScheduleConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
