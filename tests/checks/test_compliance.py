"""The official checker on the real converged log of the main job, and on
broken copies of it."""

import pytest

from mlperf_hpc.compliance import check_log
from tests.helpers import cli, log_records

pytestmark = [pytest.mark.slow]


@pytest.fixture(scope="module")
def converged_log(main_job):
    _, _, logs = main_job
    return logs[0]


def test_good_log_passes_the_official_checker(converged_log):
    verdict = check_log(converged_log)
    assert verdict.passed, verdict.reason
    assert verdict.benchmark == "cosmoflow" and verdict.division == "closed"
    assert verdict.time_to_train_min is not None and verdict.time_to_train_min > 0


def test_log_has_the_keys_closed_cosmoflow_needs(converged_log):
    keys = {r["key"] for r in log_records(converged_log)}
    assert {"submission_org", "submission_platform", "submission_division", "submission_status",
            "submission_benchmark", "cache_clear", "init_start", "init_stop", "run_start", "run_stop",
            "staging_start", "staging_stop", "epoch_start", "epoch_stop", "eval_start", "eval_stop",
            "eval_error", "train_samples", "eval_samples", "global_batch_size", "opt_name",
            "opt_base_learning_rate", "opt_learning_rate_warmup_epochs", "opt_learning_rate_warmup_factor",
            "opt_learning_rate_decay_boundary_epochs", "opt_learning_rate_decay_factor", "number_of_nodes",
            "accelerators_per_node", "seed", "dropout"} <= keys
    records = log_records(converged_log)
    assert next(r for r in records if r["key"] == "seed")["value"] == 1
    epochs = [r["metadata"]["epoch_num"] for r in records if r["key"] == "epoch_start"]
    assert epochs == list(range(1, len(epochs) + 1))  # 1-based and consecutive, as the references


def test_log_missing_a_required_key_fails(converged_log, tmp_path):
    broken = tmp_path / "broken.log"
    broken.write_text("".join(line + "\n" for line in converged_log.read_text().splitlines()
                              if '"key": "opt_name"' not in line))
    verdict = check_log(broken)
    assert not verdict.passed and "opt_name" in verdict.reason


def test_log_that_missed_the_target_fails(converged_log, tmp_path):
    lines = converged_log.read_text().splitlines()
    doctored = [ln.replace('"value": 0.', '"value": 9.') if '"key": "eval_error"' in ln else ln for ln in lines]
    broken = tmp_path / "slow.log"
    broken.write_text("\n".join(doctored) + "\n")
    assert not check_log(broken).passed


def test_check_cli_prints_one_row_per_log(converged_log, tmp_path):
    broken = tmp_path / "broken.log"
    broken.write_text(converged_log.read_text().replace('"key": "run_start"', '"key": "run_begin"'))
    result = cli("check", str(converged_log), str(broken))
    rows = [ln for ln in result.stdout.splitlines() if ln.startswith(("PASS", "FAIL"))]
    assert result.returncode == 1
    assert rows[0].split()[:4] == ["PASS", "cosmoflow", "closed", "strong"]
    assert rows[1].startswith("FAIL") and "run_start" in rows[1]
