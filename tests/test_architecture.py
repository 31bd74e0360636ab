"""docs/ARCHITECTURE.md stays true: the modules it names exist, every library module is named, and no import runs
against its arrows (parsed with ast: imports inside functions count too)."""
from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "sparseopt_edu"
DOC = (ROOT / "docs" / "ARCHITECTURE.md").read_text()

#: layer of each top-level part, in the order of the arrows: a module may import its own layer and lower ones
LAYERS = {"data": 0, "models": 0, "fast": 0, "sparse": 1, "dst": 2, "optim": 3, "diagnostics": 4,
          "convergence": 4, "bands": 4, "train": 5, "paper": 5.5, "evidence": 5.5, "viz": 6, "report": 6,
          "widgets": 6, "doctor": 6, "jupyter_setup": 6, "cli": 7}
SUBSCRIBERS = {"viz", "report", "widgets", "cli"}


def _modules() -> list[Path]:
    return sorted(p for p in PKG.rglob("*.py") if "__pycache__" not in p.parts)


def _part(path: Path) -> str:
    rel = path.relative_to(PKG)
    return rel.parts[0].removesuffix(".py")


def _imports(path: Path) -> set[str]:
    """Top-level parts of sparseopt_edu that ``path`` imports, and third-party top-level names."""
    tree = ast.parse(path.read_text())
    pkg_parts = path.relative_to(ROOT).with_suffix("").parts[:-1]
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = list(pkg_parts[: len(pkg_parts) - node.level + 1])
                name = ".".join(base + ([node.module] if node.module else []))
                if node.module is None:  # from . import x
                    out |= {".".join(base + [a.name]) for a in node.names}
                    continue
            else:
                name = node.module
            out.add(name)
            if name == "sparseopt_edu":
                out |= {f"sparseopt_edu.{a.name}" for a in node.names}
        elif isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
    return out


def _parts_imported(path: Path) -> set[str]:
    return {m.split(".")[1] for m in _imports(path) if m.startswith("sparseopt_edu.") and len(m.split(".")) > 1}


def test_every_module_named_exists_and_every_module_is_named():
    named = set(re.findall(r"`((?:[a-z_]+/)?[a-z_]+\.py)`", DOC)) - {"tests/test_architecture.py"}
    library = {str(p.relative_to(PKG)) for p in _modules() if p.name not in ("__init__.py", "__main__.py")}
    widgets_and_cli = {m for m in library if m.startswith(("widgets/", "cli/"))}  # named as widgets/*.py, cli/*.py
    assert "`widgets/*.py`" in DOC and "`cli/*.py`" in DOC
    missing = sorted(m for m in named if not (PKG / m).is_file())
    assert not missing, f"docs/ARCHITECTURE.md names modules that do not exist: {missing}"
    unnamed = sorted(library - widgets_and_cli - named)
    assert not unnamed, f"modules missing from docs/ARCHITECTURE.md's table: {unnamed}"


def test_imports_follow_the_arrows():
    bad = []
    for path in _modules():
        part = _part(path)
        if part == "__init__":  # the package's front: re-exports
            continue
        for other in _parts_imported(path) - {part}:
            if other in LAYERS and LAYERS[other] > LAYERS[part]:
                bad.append(f"{path.relative_to(ROOT)} imports {other}")
    assert not bad, "imports against the arrows of docs/ARCHITECTURE.md:\n" + "\n".join(sorted(bad))


def test_library_never_imports_subscribers_or_ui_libraries():
    bad = []
    for path in _modules():
        part = _part(path)
        if part == "__init__" or part in SUBSCRIBERS or LAYERS.get(part, 0) >= 6:
            continue
        imported = _imports(path)
        for name in imported:
            top = name.split(".")[0]
            if top in ("plotly", "ipywidgets", "anywidget") or (
                    name.startswith("sparseopt_edu.") and name.split(".")[1] in SUBSCRIBERS):
                bad.append(f"{path.relative_to(ROOT)} imports {name}")
    assert not bad, "\n".join(bad)


def test_the_checker_sees_a_violation():
    """The parser must see relative imports inside functions, or the arrow test could never fail."""
    assert "sparseopt_edu.diagnostics" in _imports(PKG / "train" / "engine.py")
    assert "sparseopt_edu.train.control" in _imports(PKG / "widgets" / "base.py")  # imported inside a method
    assert "diagnostics" in _parts_imported(PKG / "train" / "engine.py")


def test_nothing_imports_the_cli():
    bad = [str(p.relative_to(ROOT)) for p in _modules() if _part(p) != "cli" and "cli" in _parts_imported(p)]
    assert not bad, bad
