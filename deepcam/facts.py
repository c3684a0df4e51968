"""What the rest of the harness knows about DeepCAM (no TensorFlow here)."""
from pathlib import Path

from core.benchmark import BenchmarkFacts, SynthOption
from deepcam.config import CLOSED_TARGET, DeepCAMConfig

STATS_FILE = "stats.h5"   # per-channel min and max beside the splits, as the reference's

FACTS = BenchmarkFacts(
    name="deepcam",
    metric_key="eval_accuracy",
    metric_name="val IoU",
    lower_is_better=False,
    perfect_metric=1.0,
    target=CLOSED_TARGET,
    required_runs=5,
    config_schema=DeepCAMConfig,
    configs_dir=Path(__file__).parent / "configs",
    default_config="mini.yaml",
    closed_config="deepcam.yaml",
    plugin="deepcam.benchmark:DeepCAM",
    synth="deepcam.synth:synthesise",
    synth_samples=(512, 128),
    synth_outputs=(STATS_FILE,),
    synth_options=(
        SynthOption("--shape", "HxW of each sample, multiples of 16 (default 96x144; full size 768x1152)",
                    "96x144", kind=str),
    ),
)
