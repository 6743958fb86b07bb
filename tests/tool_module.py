"""A tool of tools/ loaded as a module, for in-process runs (monkeypatching, capsys)."""

import importlib.util
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


def load_tool(name):
    """``tools/<name>.py`` as a fresh module (its ``main(argv)`` runs in this process)."""
    spec = importlib.util.spec_from_file_location(f"tool_{name}", REPO_ROOT / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
