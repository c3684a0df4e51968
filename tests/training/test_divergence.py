"""The divergence guard: its three signs on hand-made histories, and real
diverging runs (learning rate x 500) stopped within 3 epochs of the sign,
in one process and on 2 data-parallel ranks. Converging runs are never
stopped: every convergence test of the suite (the main job, the 2-rank and
hybrid runs) runs with the guard on, its default."""
from __future__ import annotations

import math

import pytest
import yaml

from core.config import DivergenceConfig
from mlperf_hpc.compliance import check_log
from mlperf_hpc.divergence import DivergenceGuard
from tests.helpers import REPO, cli, log_records, mpirun, write_config

EXIT_DIVERGED = 4


def _first_stop(metrics, losses, lower_is_better=True, perfect=0.0, **config):
    guard = DivergenceGuard(DivergenceConfig(**config), lower_is_better, perfect)
    for epoch, (metric, loss) in enumerate(zip(metrics, losses), 1):
        reason = guard.sign(epoch, metric, loss)
        if reason:
            return epoch, reason
    return None, None


def test_a_non_finite_loss_or_metric_stops_the_run_at_once():
    assert _first_stop([0.5, 0.4], [1.0, math.nan])[0] == 2
    assert _first_stop([0.5, math.inf], [1.0, 0.9])[0] == 2


def test_a_dead_network_stops_after_three_unchanged_epochs():
    # The hybrid run of the issue: val MAE 0.50, 0.83, 0.53, 0.94, then 1.2335 for good.
    metrics = [0.50, 0.83, 0.53, 0.94, 1.2335, 1.2335, 1.2335, 1.2335]
    losses = [0.9, 1.1, 0.8, 1.3, 1.5, 1.5, 1.5, 1.5]
    epoch, reason = _first_stop(metrics, losses)
    assert epoch == 7 and "dead network" in reason and "epochs 5-7" in reason
    # The metric alone standing still is a plateau, not a dead network.
    assert _first_stop([0.3] * 6, [1.0, 0.9, 0.8, 0.7, 0.6, 0.5]) == (None, None)


def test_a_metric_far_worse_than_its_best_for_three_epochs_stops_the_run():
    epoch, reason = _first_stop([0.4, 0.2, 0.5, 0.6, 0.7], [1.0, 0.8, 1.2, 1.3, 1.4])
    assert epoch == 5 and "2x worse than the best" in reason and "epochs 3-5" in reason
    # Higher is better (an IoU): distance from 1.
    epoch, _ = _first_stop([0.6, 0.8, 0.5, 0.55, 0.58], [1.0, 0.8, 1.2, 1.1, 1.0], lower_is_better=False,
                           perfect=1.0)
    assert epoch == 5
    # Two bad epochs, then back: not stopped.
    assert _first_stop([0.4, 0.2, 0.5, 0.6, 0.3, 0.2], [1, 0.8, 1.2, 1.3, 0.9, 0.8]) == (None, None)


def test_a_disabled_guard_never_stops():
    assert _first_stop([math.nan] * 4, [math.nan] * 4, enabled=False) == (None, None)


def test_a_converging_history_is_never_stopped():
    # The eval_error of a real converged mini run (logs/example-report),
    # with a falling loss: noisy, but never the signs above.
    log = sorted((REPO / "logs" / "example-report").glob("*.log"))[0]
    metrics = [r["value"] for r in log_records(log) if r["key"] == "eval_error"]
    assert len(metrics) > 10
    assert _first_stop(metrics, [1.0 / e for e in range(1, len(metrics) + 1)]) == (None, None)


def _scale_learning_rate(config, factor: float) -> None:
    raw = yaml.safe_load(config.read_text())
    raw["lr_schedule"]["base_lr"] *= factor
    config.write_text(yaml.safe_dump(raw))


def _assert_stopped_by_the_guard(result, log, max_epochs):
    assert result.returncode == EXIT_DIVERGED, result.stderr[-3000:]
    lines = [ln for ln in result.stderr.splitlines() if "stopped, it cannot reach its target" in ln]
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr[-3000:]
    records = log_records(log)
    assert records[-1]["key"] == "run_stop" and records[-1]["metadata"]["status"] == "aborted"
    metrics = [r["value"] for r in records if r["key"] == "eval_error"]
    # The sign: the first epoch of the final stretch of equal metrics (a dead
    # network), or a non-finite one. The run stops within 3 epochs of it.
    sign = len(metrics)
    while sign > 1 and metrics[sign - 2] == metrics[-1]:
        sign -= 1
    assert "dead network" in lines[0] or "not finite" in lines[0], lines[0]
    assert len(metrics) - sign <= 3 and len(metrics) < max_epochs, (lines[0], metrics)
    # The log stays valid: nothing but what any run that missed its target gets.
    verdict = check_log(log)
    assert all(r.startswith("official checker") and "eval_error" in r or "status is 'aborted'" in r
               for r in verdict.reasons), verdict.reasons


@pytest.mark.slow
def test_a_diverging_run_stops_itself_in_one_process(tmp_path, tiny_data):
    config = write_config(tmp_path / "c.yaml", tiny_data, data={"n_train": 64, "n_valid": 32, "batch_size": 8,
                                                               "n_epochs": 30})
    _scale_learning_rate(config, 500)
    result = cli("train", "cosmoflow", "--config", str(config), "--log", str(tmp_path / "r.log"))
    _assert_stopped_by_the_guard(result, tmp_path / "r.log", 30)


@pytest.mark.slow
@pytest.mark.mpi
def test_a_diverging_run_stops_itself_on_two_data_parallel_ranks(tmp_path, tiny_data):
    config = write_config(tmp_path / "c.yaml", tiny_data, data={"n_train": 64, "n_valid": 32, "batch_size": 4,
                                                               "n_epochs": 30})
    _scale_learning_rate(config, 500)
    result = mpirun(2, "train", "cosmoflow", "--layout", "data", "--config", str(config),
                    "--log", str(tmp_path / "r.log"))
    _assert_stopped_by_the_guard(result, tmp_path / "r.log", 30)
