"""The package layers: every import points down, nothing imports in a circle,
benchmarks are reached only through the registry, and the parts that the
command line needs before training import no TensorFlow."""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

from tests.helpers import REPO

# Lower layers may not import higher ones; packages on one layer may not
# import each other.
LAYERS = {"core": 0, "parallel": 1, "cosmoflow": 2, "deepcam": 2, "launch": 2, "mlperf_hpc": 3}
BENCHMARK_PACKAGES = ("cosmoflow", "deepcam")


def _module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports() -> dict[str, set[str]]:
    """Project module -> the project modules it imports (anywhere in its body)."""
    modules = {_module_name(p): p for package in LAYERS for p in (REPO / package).rglob("*.py")}
    graph = {}
    for name, path in modules.items():
        found = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [f"{node.module}.{alias.name}" for alias in node.names] + [node.module]
            else:
                continue
            for target in targets:
                # The longest project module the target names (a module, or a name in one).
                while target and target not in modules:
                    target = target.rpartition(".")[0]
                if target and target != name:
                    found.add(target)
        graph[name] = found
    return graph


def test_every_import_points_down_a_layer():
    wrong = []
    for module, targets in _imports().items():
        here = module.split(".")[0]
        for target in targets:
            there = target.split(".")[0]
            if there != here and LAYERS[there] >= LAYERS[here]:
                wrong.append(f"{module} -> {target}")
    assert not wrong, wrong


def test_no_import_cycles():
    graph = _imports()
    state, cycles = {}, []

    def visit(module, path):
        state[module] = "open"
        for target in sorted(graph.get(module, ())):
            if state.get(target) == "open":
                cycles.append(path[path.index(target):] + [target])
            elif target not in state:
                visit(target, path + [target])
        state[module] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert not cycles, cycles


def test_benchmarks_are_reached_only_through_the_registry():
    outside = [f"{module} -> {target}" for module, targets in _imports().items() for target in targets
               if target.split(".")[0] in BENCHMARK_PACKAGES and module.split(".")[0] != target.split(".")[0]]
    assert not outside, outside


def test_what_runs_before_training_imports_no_tensorflow():
    code = ("import sys\n"
            "from core.benchmark import benchmark_names, get_facts\n"
            "import mlperf_hpc.cli, mlperf_hpc.compliance, mlperf_hpc.report, launch.render, launch.submit\n"
            "import parallel.topology\n"
            "mlperf_hpc.cli.build_parser()\n"
            "for name in benchmark_names():\n"
            "    facts = get_facts(name)\n"
            "    facts.load_config()\n"
            "    facts.load_config(facts.configs_dir / facts.closed_config)\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'horovod', 'mesh_tensorflow')))\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "[]"
