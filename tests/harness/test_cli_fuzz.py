"""Bad values for every option of every command, through the real command
line: each is refused with exit status 2 and exactly one ``mlperf-hpc:
error:`` line naming the option, no traceback, and nothing already written
is lost or changed. Validation comes before any work, so no case trains.

The cases run in-process (``mlperf_hpc.cli.main``, the console script's
entry point) for speed; a few run as real subprocesses, and one under
mpirun, where only rank 0 prints the error and every rank exits non-zero.
"""
from __future__ import annotations

import hashlib
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from mlperf_hpc.cli import main
from tests.helpers import MPI_ENV, PYTHON, REPO, cli

HUGE = "1" + "0" * 30
NUMBER = ("0", "-1", HUGE, "", "abc")            # for counts and sizes that must be positive
SEED = ("-1", HUGE, "", "abc")                   # 0 is a valid seed
WORD = ("", "$(touch /tmp/fuzz-pwned)", "a;reboot", "../..")   # for names, choices, formats
UNWRITABLE = "/proc/fuzz/out"                    # root can write anywhere else; not here
PLANTED = "planted-file"                         # a file where a directory is needed


@dataclass
class World:
    """The files bad commands must leave alone, and good values to start from."""
    root: Path
    data: Path

    @property
    def log(self) -> Path:                       # a finished run's log
        return self.root / "old.log"

    def snapshot(self) -> dict[str, str]:
        return {str(p.relative_to(self.root)): hashlib.sha256(p.read_bytes()).hexdigest()
                for p in sorted(self.root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def world(tmp_path_factory, tiny_data) -> World:
    root = tmp_path_factory.mktemp("fuzz")
    w = World(root, tiny_data)
    w.log.write_text(":::MLLOG {\"key\": \"run_stop\"}\n")
    (root / PLANTED).write_text("not a directory\n")
    for name, files in {"report": ["report.md"], "synth/train": ["a.tfrecord"], "job": ["result.log", "job.sh"],
                        "sweep": ["manifest.json"]}.items():
        (root / name).mkdir(parents=True)
        for f in files:
            (root / name / f).write_text(f"{name}/{f}\n")
    return w


def paths(w: World, new: str) -> tuple[str, ...]:
    """Bad output paths: unwritable, under a file, empty, and one that exists."""
    return (UNWRITABLE, str(w.root / PLANTED / "x"), "", str(w.root / new))


def cases(w: World) -> list[tuple[str, list[str], str, str]]:
    """(command, good argv, option, bad value), one per option and value."""
    new_log = str(w.root / "never" / "run.log")
    train = ["train", "cosmoflow", "--data", str(w.data), "--log", new_log, "--set", "data.n_train=64",
             "--set", "data.n_valid=32"]
    synth_c = ["data", "synth", "cosmoflow", "--out", str(w.root / "never-synth"), "--n-train", "4", "--n-valid", "2"]
    synth_d = ["data", "synth", "deepcam", "--out", str(w.root / "never-synth"), "--n-train", "4", "--n-valid", "2"]
    job = ["--system", "fugaku", "--nodes", "4", "--group", "hp1", "--job-dir", str(w.root / "never-job")]
    table = {
        "train": (train, {
            "--batch-size": NUMBER, "--epochs": NUMBER, "--seed": SEED, "--instances": NUMBER,
            "--instance-id": ("-1", "", "abc", "3"), "--layout": WORD, "--spatial": ("0x1", "1x", "abc", "", "$(id)"),
            "--layout hybrid --spatial": ("0x1", "1x", "abc", "", "$(id)", "3x1", "64x1"),
            "--config": ("", str(w.root / "none.yaml"), str(w.root), str(w.log)),
            "--data": ("", str(w.root / "nowhere")),
            "--log": (UNWRITABLE, str(w.root / PLANTED / "x.log"), "", str(w.log), str(w.root)),
            "--stage-dir": (UNWRITABLE, str(w.root / PLANTED), ""),
            "--instances 2 --instance-id 0 --start-gate": (UNWRITABLE, str(w.root / PLANTED), ""),
            "--save-weights": (UNWRITABLE, str(w.log), ""),
            "--set": ("nokey", "data.batch_size=0", "data.nope=1", "nope.x=1", "data.n_train=abc",
                      "model.dropout=1.0", "optimizer.momentum=-0.1", "lr_schedule.base_lr=-1",
                      "lr_schedule.scaling=cubic", "data.sample_shape=[32,32]", "train.seed=-5"),
        }),
        "synth cosmoflow": (synth_c, {
            "--out": paths(w, "synth"), "--n-train": NUMBER, "--n-valid": NUMBER, "--seed": SEED,
            "--size": ("0", "-1", "48", HUGE, "", "abc"), "--format": WORD,
            "--samples-per-file": ("0", "-1", "", "abc"),
        }),
        "synth deepcam": (synth_d, {
            "--shape": ("0x0", "-16x16", "30x48", "", "abc", "16x", "1600000x1600000", "$(id)"),
            "--n-train": NUMBER,
        }),
        "check": (["check", str(w.log)], {"--ruleset": WORD + ("9.9.9",)}),
        "report": (["report", str(w.log), "--out", str(w.root / "never-report")], {"--out": paths(w, "report")}),
        "run": (["run", "--workdir", str(w.root / "never-run")], {
            "--workdir": (UNWRITABLE, str(w.root / PLANTED), ""), "--seed": SEED}),
        "launch render": (["launch", "render", *job], {
            "--system": WORD, "--benchmark": WORD, "--nodes": NUMBER, "--ppn": NUMBER, "--instances": NUMBER,
            "--layout": WORD, "--spatial": ("0x1", "abc", "", "$(id)"), "--config": ("", str(w.root / "none.yaml")),
            "--data": ("",), "--elapse": ("", "abc", "25:99:00", "9999:00:00", "-1"), "--name": WORD,
            "--group": WORD, "--rscgrp": WORD, "--shape": ("0x0", "3x3", "abc", "", "$(id)"), "--topology": WORD,
            "--job-dir": (UNWRITABLE, "", "/tmp/a b", "$(id)", str(w.root / "job")), "--seed": SEED,
        }),
        "launch submit": (["launch", "submit", *job, "--dry-run"], {"--nodes": NUMBER, "--name": WORD}),
        "launch sweep": (["launch", "sweep", *job[:2], *job[4:], "--nodes", "1,2", "--render-only"], {
            "--nodes": ("0", "-1", "", "abc", "1,x", "10000000"),
            "--layouts": ("", "abc", "hybrid:0x1", "hybrid", "data:2x1", "$(id)"),
            "--job-dir": (UNWRITABLE, str(w.root / PLANTED)),
        }),
        "launch status": (["launch", "status", "--system", "fugaku"], {"--system": WORD}),
        "launch collect": (["launch", "collect", str(w.root / "job"), "--system", "fugaku",
                            "--into", str(w.root / "never-into")], {
            "--org": WORD, "--into": (UNWRITABLE, str(w.root / PLANTED)), "--system": WORD}),
    }
    out = []
    for command, (base, options) in table.items():
        for words, values in options.items():
            # "--a 1 --b": other options the bad value needs, then the option it is for
            *context, option = words.split()
            for value in values:
                argv = list(base) + context
                if option in argv and option != "--set":
                    argv[argv.index(option) + 1] = value
                else:
                    argv += [option, value]
                out.append((command, argv, option, value))
    # Positional arguments: job ids and directories that cannot be.
    for value in ("abc", "1;reboot", "", "$(id)"):
        out.append(("launch status", ["launch", "status", "--system", "abci3", value], "job id", value))
        out.append(("launch cancel", ["launch", "cancel", "--system", "fugaku", value], "job id", value))
    for value in (str(w.root / "nowhere"), str(w.log)):
        out.append(("launch collect", ["launch", "collect", value, "--system", "fugaku", "--into",
                                       str(w.root / "never-into")], "DIR", value))
        out.append(("report", ["report", value, "--out", str(w.root / "never-report")], "PATH", value))
    return out


def _refused(argv: list[str], capsys) -> str:
    """Run the CLI; the one error line it printed, after checking the rest."""
    code = main(argv)
    captured = capsys.readouterr()
    lines = [ln for ln in captured.err.splitlines() if ln.startswith("mlperf-hpc: error:")]
    assert code == 2, f"exit {code} for {argv}: {captured.err[-500:]}"
    assert len(lines) == 1, captured.err
    assert "Traceback" not in captured.err
    return lines[0]


def test_every_bad_option_value_is_one_error_line_naming_the_option(world, capsys, monkeypatch):
    monkeypatch.chdir(world.root)           # default outputs (jobs/, logs/) would land here
    before = world.snapshot()
    failures = []
    for command, argv, option, value in cases(world):
        try:
            line = _refused(argv, capsys)
            named = option if option not in ("job id", "DIR", "PATH") else value
            if named not in line and not (option == "--set" and value.split("=")[0] in line):
                failures.append(f"{command} {option}={value!r}: the error does not name it: {line}")
        except Exception as err:           # an assertion, or an exception main() let out: a traceback
            failures.append(f"{command} {option}={value!r}: {type(err).__name__}: {str(err)[:300]}")
            capsys.readouterr()
        if world.snapshot() != before:
            failures.append(f"{command} {option}={value!r} changed files that were already there")
            before = world.snapshot()
    assert not failures, "\n".join(failures)
    assert not Path("/tmp/fuzz-pwned").exists()
    assert not any((world.root / name).exists() for name in ("never", "never-synth", "never-job", "never-report",
                                                             "never-run", "never-into", "jobs", "logs", "sweeps"))


@pytest.mark.parametrize("args, option", [
    (["train", "cosmoflow", "--batch-size", "0"], "--batch-size"),
    (["data", "synth", "deepcam", "--out", "/proc/x", "--shape", "96x144"], "--out"),
    (["launch", "render", "--system", "abci2", "--nodes", "-1", "--group", "g"], "--nodes"),
])
def test_refusals_from_the_installed_command_are_one_line(args, option):
    result = cli(*args)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("mlperf-hpc: error:") and option in result.stderr


@pytest.mark.slow
@pytest.mark.mpi
def test_under_mpirun_only_rank_0_prints_and_every_rank_exits_nonzero(tmp_path, tiny_data):
    # Each rank records its own exit status (mpirun reports only the first),
    # and mpirun lets every rank finish instead of killing the rest at the first
    # (its own exit status is then 0).
    script = (f"{PYTHON} -m mlperf_hpc.cli train cosmoflow --data {tiny_data} --batch-size 0 "
              f"--log {tmp_path}/run.log; code=$?; echo $code > {tmp_path}/exit.$OMPI_COMM_WORLD_RANK; exit $code")
    result = subprocess.run(["mpirun", "-np", "3", "--oversubscribe", "--mca", "orte_abort_on_non_zero_status", "0",
                             "sh", "-c", script], capture_output=True,
                            text=True, cwd=REPO, env={**os.environ, **MPI_ENV}, timeout=120)
    assert result.stderr.count("mlperf-hpc: error:") == 1, result.stderr
    assert "--batch-size (data.batch_size) = 0 is out of range" in result.stderr
    assert [(tmp_path / f"exit.{rank}").read_text().strip() for rank in range(3)] == ["2", "2", "2"]
    assert not (tmp_path / "run.log").exists()
