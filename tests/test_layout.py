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


def test_importing_transport_does_not_load_torch():
    code = "import sys, transport; print('torch' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert out.stdout.strip() == "False", out.stderr


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


def test_no_module_of_node_or_transport_is_over_300_lines():
    long = {
        str(path.relative_to(ROOT)): n
        for package in ("node", "transport")
        for path in (ROOT / package).rglob("*.py")
        if (n := len(path.read_text().splitlines())) > 300
    }
    assert not long, long
