"""Imports run one way, launcher -> node -> transport, and nothing on the wire path unpickles."""

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def imported_roots(package: str) -> set[str]:
    roots = set()
    for path in (ROOT / package).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                roots.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                roots.add(node.module.split(".")[0])
    return roots


def test_transport_imports_neither_torch_nor_node_nor_launcher():
    assert not imported_roots("transport") & {"torch", "node", "launcher", "pickle"}


def test_node_does_not_import_launcher():
    assert "launcher" not in imported_roots("node")


def loaded_by(*modules: str) -> set[str]:
    """Every module importing `modules` loads, in a fresh interpreter: what an import pulls in
    through the modules it imports, not only what a file names."""
    lines = ["import importlib, sys", *(f"importlib.import_module({m!r})" for m in modules)]
    if "node.algorithms" in modules:  # and every built-in algorithm's module
        lines.append("importlib.import_module('node.algorithms').builtin_algorithms()")
    code = "\n".join([*lines, "print(' '.join(sorted(sys.modules)))"])
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    return set(out.stdout.split())


def roots(modules: set[str]) -> set[str]:
    return {m.split(".")[0] for m in modules}


def test_importing_transport_loads_neither_torch_nor_the_node_nor_the_launcher():
    assert not roots(loaded_by("transport")) & {"torch", "node", "launcher"}


def test_algorithms_and_codecs_load_no_socket_and_no_transport():
    """Every built-in algorithm (all of them imported), the codecs, a node's spec and the
    config checks: tensor logic and plain data."""
    loaded = loaded_by("node.algorithms", "node.sharing", "node.spec", "node.checks")
    assert {"node.algorithms.divshare", "node.algorithms.choco"} <= loaded  # all were imported
    assert not roots(loaded) & {"zmq", "transport", "launcher"}


READING_A_FINISHED_RUN = (
    "launcher.report.summary",
    "launcher.report.compare",
    "launcher.report.runs",
    "launcher.report.timeline",
    "launcher.report.cli",
    "launcher.reproduce.analysis",
    "launcher.reproduce.render",
)


def test_reading_a_finished_run_loads_no_torch_no_transport_and_no_node_runtime():
    loaded = loaded_by(*READING_A_FINISHED_RUN)
    assert not roots(loaded) & {"torch", "zmq", "transport"}
    # of the node, only its file helpers (atomic writes, JSON lines: the standard library)
    assert {m for m in loaded if roots({m}) == {"node"}} == {"node", "node.files"}


def test_the_printed_summary_knows_the_transports_loss_reasons():
    from launcher.report.summary import LOST_REASONS
    from transport.stats import LOST_COUNTED

    assert LOST_REASONS == LOST_COUNTED


UNPICKLING = ("pickle.load", "Unpickler", "torch.load", "recv_pyobj", "allow_pickle=True")
RESTRICTED_LOADER = ROOT / "node" / "data" / "safe_pickle.py"


def test_only_the_restricted_loader_unpickles():
    for package in ("transport", "node", "launcher", "bench"):
        for path in (ROOT / package).rglob("*.py"):
            text = path.read_text()
            found = [word for word in UNPICKLING if word in text]
            if path == RESTRICTED_LOADER:
                assert found == ["Unpickler"], found  # and nothing looser
            else:
                assert not found, (path, found)


def test_torchvision_is_imported_only_through_the_shim():
    shim = ROOT / "node" / "data" / "torchvision_compat.py"
    for package in ("transport", "node", "launcher", "bench"):
        for path in (ROOT / package).rglob("*.py"):
            if path != shim:
                text = path.read_text()
                assert "import torchvision" not in text and "from torchvision" not in text, path


def test_algorithms_know_no_transport_and_node_no_zmq():
    """Algorithms and codecs are tensor logic; only the transport touches sockets."""
    assert not imported_roots("node/algorithms") & {"transport", "zmq"}
    assert not imported_roots("node/sharing") & {"transport", "zmq"}
    assert not imported_roots("node") & {"launcher", "zmq"}


def test_benchmarks_do_not_import_the_tests():
    assert "tests" not in imported_roots("bench")
