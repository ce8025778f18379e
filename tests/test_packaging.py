"""`python -m build` makes a pure wheel that works with NumPy alone."""

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


def test_wheel_works_with_only_numpy(wheel, tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    py = str(venv / "bin" / "python")
    subprocess.run([py, "-m", "pip", "install", "-q", str(wheel)], check=True)
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
