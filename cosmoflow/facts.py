"""What the rest of the harness knows about CosmoFlow (no TensorFlow here)."""
from pathlib import Path

from core.benchmark import BenchmarkFacts, SynthOption
from core.config import Valid
from cosmoflow.config import CLOSED_TARGET, CosmoFlowConfig

FACTS = BenchmarkFacts(
    name="cosmoflow",
    metric_key="eval_error",
    metric_name="val MAE",
    lower_is_better=True,
    target=CLOSED_TARGET,
    required_runs=10,
    config_schema=CosmoFlowConfig,
    configs_dir=Path(__file__).parent / "configs",
    default_config="mini.yaml",
    closed_config="cosmo.yaml",
    plugin="cosmoflow.benchmark:CosmoFlow",
    synth="cosmoflow.synth:synthesise",
    synth_samples=(1024, 256),
    synth_options=(
        SynthOption("--size", "cube side in voxels, a multiple of 32 for the 5-layer model "
                              "(32, 64; full size 128; default 32)", 32, valid=Valid(minimum=2)),
        SynthOption("--format", "on-disk format (default tfrecord, the reference's)", "tfrecord", kind=str,
                    choices=("tfrecord", "hdf5")),
        SynthOption("--samples-per-file", "samples per file (default 1)", 1, valid=Valid(minimum=1)),
    ),
)
