"""The toy benchmark's config: the shared sections plus a model width."""
from __future__ import annotations

from dataclasses import dataclass, field

from core import config as base
from core.config import ranged


@dataclass
class DataConfig(base.DataConfig):
    n_train: int = 64
    n_valid: int = 16
    batch_size: int = 8
    n_epochs: int = 30


@dataclass
class ModelConfig:
    hidden: int = ranged(16, minimum=1)
    lr: float = ranged(0.05, above=0)


@dataclass
class TrainConfig(base.TrainConfig):
    target: float = ranged(0.1, minimum=0)


@dataclass
class ToyConfig(base.BenchmarkConfig):
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
