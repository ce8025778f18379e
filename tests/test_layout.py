"""The package's layout keeps its promises: the query side never imports the build side,
the file format imports neither, and the browser's entry point loads only the query side."""

import ast
import pathlib
import subprocess
import sys

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parent.parent / "lorann_wasm"


def _imports(path):
    """Absolute module names a file imports (relative imports resolved)."""
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = parts[:-node.level] if node.level else []
            module = ".".join(base + ([node.module] if node.module else []))
            out.add(module)
            out.update(f"{module}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
    return out


@pytest.mark.parametrize("side, forbidden", [
    ("query", ("lorann_wasm.training",)),
    ("format", ("lorann_wasm.training", "lorann_wasm.query")),
])
def test_sides_do_not_import_what_they_sit_beside(side, forbidden):
    files = sorted((PACKAGE / side).glob("*.py"))
    assert files
    for path in files:
        bad = [m for m in _imports(path) if m.startswith(forbidden)]
        assert not bad, f"{path.name} imports {bad}"


def test_the_browser_entry_point_loads_only_the_query_side():
    code = ("import sys, lorann_wasm.bridge; "
            "print(sorted(m for m in sys.modules if m.startswith('lorann_wasm')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=PACKAGE.parent, check=True).stdout
    loaded = ast.literal_eval(out)
    assert "lorann_wasm.query.engine" in loaded and "lorann_wasm.format.index_file" in loaded
    assert not [m for m in loaded if m.startswith("lorann_wasm.training")], loaded


def test_the_readme_parameter_table_matches_the_code():
    """Every build parameter of IndexParams.for_data is in the README's table, with its
    default as the code has it (computed defaults are named by their rule)."""
    import inspect
    import re

    from lorann_wasm.params import IndexParams
    readme = (PACKAGE.parent / "README.md").read_text()
    rows = {}
    for line in readme.splitlines():
        m = re.fullmatch(r"\|\s*`(\w+)`\s*\|(.*)\|(.*)\|\s*", line)
        if m:
            rows[m.group(1)] = m.group(3).strip()
    params = inspect.signature(IndexParams.for_data).parameters
    for name, p in params.items():
        if name in ("n", "dim", "attributes") or p.kind != p.KEYWORD_ONLY:
            continue
        assert name in rows, f"README's parameter table lacks {name}"
        default = rows[name]
        if name == "n_clusters":
            assert "sqrt(n)" in default
        elif name == "global_dim":
            assert "128" in default and "256" in default
        else:
            want = f'"{p.default}"' if isinstance(p.default, str) else str(p.default)
            assert want in default, (name, want, default)
    assert set(rows) - set(params) == set(), set(rows) - set(params)


def test_nothing_reads_the_engines_private_state_from_outside():
    """Benchmarks, profiling and tuning run the engine through its public stage API
    (``index.stages``), not through its private attributes; and no module imports
    another's private names."""
    owners = {"query/engine.py", "index.py", "lazy.py"}
    private_state = {"_prefix", "_store", "_params", "_tensors"}
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE).as_posix()
        for node in ast.walk(ast.parse(path.read_text())):
            if (isinstance(node, ast.Attribute) and node.attr in private_state
                    and rel not in owners
                    and not (isinstance(node.value, ast.Name) and node.value.id == "self")):
                found.append(f"{rel}:{node.lineno} {ast.unparse(node)}")
            if isinstance(node, ast.ImportFrom):
                found += [f"{rel}:{node.lineno} imports {a.name}" for a in node.names
                          if a.name.startswith("_") and not a.name.startswith("__")]
    assert not found, found
