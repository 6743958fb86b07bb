"""The core pipeline never imports the export runtimes (onnx, onnxruntime, cv2).

They are optional for anyone who only prepares data, trains and evaluates: importing every
module of the package, and the pipeline's tools, must not load them.
"""

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RUNTIMES = ("onnx", "onnxruntime", "cv2")

PROBE = r"""
import importlib, importlib.util, pkgutil, sys
import ddsr
for info in pkgutil.walk_packages(ddsr.__path__, "ddsr."):
    importlib.import_module(info.name)
for tool in ("make_h5", "make_nets", "train", "eval", "upscale", "export", "import_official"):
    path = f"{sys.argv[1]}/tools/{tool}.py"
    try:
        spec = importlib.util.spec_from_file_location("tool_" + tool, path)
        spec.loader.exec_module(importlib.util.module_from_spec(spec))
    except FileNotFoundError:
        pass
loaded = sorted(m for m in sys.modules if m.split(".")[0] in %r)
print("LOADED", loaded)
print("MODULES", len([m for m in sys.modules if m.startswith("ddsr.")]))
""" % (RUNTIMES,)


def test_importing_the_package_and_tools_loads_no_runtime():
    proc = subprocess.run([sys.executable, "-c", PROBE, str(REPO)], capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    assert "LOADED []" in proc.stdout, proc.stdout
    n_modules = int(proc.stdout.split("MODULES")[1])
    assert n_modules >= 20  # the probe did import the package (inference modules included)


def test_the_probe_would_see_a_runtime():
    """The same probe, with onnx imported by hand, reports it (the check above can fail)."""
    proc = subprocess.run([sys.executable, "-c", "import onnx\n" + PROBE, str(REPO)], capture_output=True,
                          text=True, cwd=REPO)
    assert "'onnx'" in proc.stdout.split("LOADED")[1]
