"""The toy benchmark's facts: all the harness outside this folder knows of it."""
from pathlib import Path

from core.benchmark import BenchmarkFacts
from tests.toy_benchmark.config import ToyConfig

FACTS = BenchmarkFacts(
    name="toy", metric_key="eval_error", metric_name="val MAE", lower_is_better=True, target=0.1,
    required_runs=3, config_schema=ToyConfig, configs_dir=Path(__file__).parent / "configs",
    default_config="toy.yaml", closed_config="toy.yaml", plugin="tests.toy_benchmark.benchmark:Toy",
    synth="tests.toy_benchmark.benchmark:synthesise", synth_samples=(64, 16))
