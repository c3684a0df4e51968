"""``check`` scores and RCP verdicts against the official tools' own output
on real published submission trees (tests/fixtures, see its README)."""
from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import shutil
from pathlib import Path

import pytest
from mlperf_logging.result_summarizer import result_summarizer

from mlperf_hpc.compliance import check_path
from tests.helpers import REPO, cli

NVIDIA = REPO / "tests" / "fixtures" / "hpc_results_v3.0" / "NVIDIA"
PUBLISHED = {("eos_n64_ngc23.09_pytorch", "cosmoflow"): 2.117764333947207,
             ("eos_n256_ngc23.09_pytorch", "deepcam"): 0.8301944444444445}


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst, copy_function=shutil.copyfile)
    return dst


def _summarizer(org: Path) -> tuple:
    """The official result summarizer on a copy of a tree (it writes into it)."""
    copy = _copy(org, org.parent / f"{org.name}-summarized" / org.name)
    logging.getLogger().setLevel(logging.CRITICAL)
    with contextlib.redirect_stdout(io.StringIO()):
        return result_summarizer.summarize_results(str(copy), "hpc", "3.0.0")


def _scores(report):
    return {(s.group.split("/")[0], s.benchmark): s for s in report.scores}


def _digest(root: Path) -> dict:
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*")) if p.is_file()}


def test_scores_equal_the_published_summarizer_scores_and_the_tree_is_untouched():
    before = _digest(NVIDIA)
    report = check_path(NVIDIA)
    assert report.passed, report.table()
    assert all(v.passed for v in report.verdicts) and len(report.verdicts) == 15
    scores = _scores(report)
    for key, published in PUBLISHED.items():
        assert scores[key].time_to_train_min == pytest.approx(published, rel=1e-6)
        assert scores[key].rcp == "RCP found" and scores[key].rcp_passed
    assert scores[("eos_n64_ngc23.09_pytorch", "cosmoflow")].rcp_scaling_factor == pytest.approx(1.009208103130755)
    assert report.package and report.package[0][1]                  # the official package checker passed
    assert _digest(NVIDIA) == before                                 # scaling.json and all: the checks ran on copies


@pytest.mark.slow
def test_strong_scores_equal_the_official_summarizer_run_on_the_same_tree(tmp_path):
    _, _, detailed, _ = _summarizer(_copy(NVIDIA, tmp_path / "NVIDIA"))
    scores = {benchmark: score for (_, benchmark), score in _scores(check_path(NVIDIA)).items()}
    compared = 0
    for _, row in detailed.iterrows():
        for benchmark, ours in scores.items():
            value = row[f"{benchmark}:time_to_train"]
            if _missing(value):
                continue
            assert ours.time_to_train_min == pytest.approx(value, rel=1e-6)
            assert ours.rcp_scaling_factor == pytest.approx(row[f"{benchmark}:rcp_scaling_factor"], rel=1e-9)
            assert row[f"{benchmark}:RCP"] == ("Pass" if ours.rcp_passed else "Fail")
            compared += 1
    assert compared == 2


def _missing(value) -> bool:
    return value is None or value != value          # the summarizer's empty cells: None or NaN


def _weak_tree(tmp_path: Path, accelerators: int | None = None) -> Path:
    """The 10 published CosmoFlow runs as one weak-scaling submission (10
    instances), optionally re-logged as a CPU system (accelerators 0)."""
    org = _copy(NVIDIA, tmp_path / "NVIDIA")
    system = org / "results" / "eos_n64_ngc23.09_pytorch"
    (system / "strong" / "cosmoflow" / "scaling.json").unlink()
    shutil.move(system / "strong", system / "weak")
    shutil.rmtree(org / "results" / "eos_n256_ngc23.09_pytorch")
    (org / "systems" / "eos_n256_ngc23.09_pytorch.json").unlink()
    if accelerators is not None:
        for log in (system / "weak" / "cosmoflow").glob("result_*.txt"):
            log.write_text(log.read_text().replace('"key": "accelerators_per_node", "value": 8',
                                                   f'"key": "accelerators_per_node", "value": {accelerators}'))
        desc_path = org / "systems" / "eos_n64_ngc23.09_pytorch.json"
        desc = json.loads(desc_path.read_text())
        desc["accelerators_per_node"] = str(accelerators)
        desc_path.write_text(json.dumps(desc))
    return org


@pytest.mark.slow
@pytest.mark.parametrize("accelerators, scale", [(None, 64 * 8), (0, 64)])
def test_weak_scores_equal_the_official_summarizer(tmp_path, accelerators, scale):
    org = _weak_tree(tmp_path, accelerators)
    (score,) = check_path(org).scores
    _, weak, _, _ = _summarizer(org)
    (row,) = [r for _, r in weak.iterrows()]
    assert score.scaling == "weak" and score.number_of_models == row["cosmoflow:number_of_models"] == 10
    assert score.instance_scale == row["cosmoflow:instance_scale"] == scale     # CPU systems count nodes
    assert score.time_to_train_all_min == pytest.approx(row["cosmoflow:time_to_train_all"], rel=1e-6)


@pytest.mark.slow
def test_rcp_failure_is_reported_and_bypass_is_shown(tmp_path):
    org = _copy(NVIDIA, tmp_path / "NVIDIA")
    shutil.rmtree(org / "results" / "eos_n256_ngc23.09_pytorch")
    (org / "systems" / "eos_n256_ngc23.09_pytorch.json").unlink()
    folder = org / "results" / "eos_n64_ngc23.09_pytorch" / "strong" / "cosmoflow"
    for log in folder.glob("result_*.txt"):       # a batch size no RCP covers
        log.write_text(log.read_text().replace('"key": "global_batch_size", "value": 512',
                                               '"key": "global_batch_size", "value": 4096'))
    plain = cli("check", str(org))
    assert plain.returncode == 1
    assert "FAIL  RCP cosmoflow [eos_n64_ngc23.09_pytorch/strong/cosmoflow]: Missing RCP, please submit RCP with " \
           "BS = 4096" in plain.stdout
    bypass = cli("check", str(org), "--rcp-bypass")
    assert "PASS  RCP cosmoflow" in bypass.stdout and "passed using rcp_bypass (with --rcp-bypass)" in bypass.stdout
    assert "official package checker" in bypass.stdout and "(with --rcp-bypass)" in bypass.stdout


def test_submission_keys_must_match_the_system_description(tmp_path):
    org = _copy(NVIDIA, tmp_path / "NVIDIA")
    log = org / "results" / "eos_n256_ngc23.09_pytorch" / "strong" / "deepcam" / "result_2.txt"
    log.write_text(log.read_text().replace('"key": "submission_org", "value": "NVIDIA"',
                                           '"key": "submission_org", "value": "NVIDlA"'))
    verdicts = {v.path.name + v.benchmark: v for v in check_path(org).verdicts}
    reason = verdicts["result_2.txtdeepcam"].reason
    assert "submission_org is 'NVIDlA' but eos_n256_ngc23.09_pytorch.json says 'NVIDIA'" in reason
    assert verdicts["result_1.txtdeepcam"].passed


def test_rcp_command_answers_before_a_run():
    found = cli("rcp", "--benchmark", "cosmoflow", "--batch", "512")
    assert found.returncode == 0
    assert "RCP found (batch 512, 20 runs)" in found.stdout and "mean 22.83 (reference runs 21-24)" in found.stdout
    interpolated = cli("rcp", "--benchmark", "cosmoflow", "--batch", "100").stdout
    assert "interpolated between the RCPs at batch 32 and 512" in interpolated
    missing = cli("rcp", "--benchmark", "deepcam", "--batch", "4096").stdout
    assert "the RCP check fails; a run needs --rcp-bypass" in missing
