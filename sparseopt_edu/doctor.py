"""Describe the environment the course runs in, and say what to fix.

Why: most "the widgets don't show" / "Stop does nothing" reports come from three things: a missing package
(plotly >= 6 FigureWidget needs anywidget), the JupyterLab settings override not installed (widget messages
must reach the kernel on a subshell, ``commsOverSubshells``), or a notebook kernel that is not the Python the
server (and the course) was installed into. ``environment_report()`` checks all three and is shared by
``sparseopt-edu doctor`` and notebook 00. It never raises: every probe reports its own failure as text.
"""
from __future__ import annotations

import json
import os
import platform
import shutil
import sys
from importlib import metadata, resources
from pathlib import Path
from typing import Any

NOT_INSTALLED = "not installed"

#: distribution names whose versions the report lists, in display order
PACKAGES = (
    "torchvision",
    "jupyterlab",
    "ipywidgets",
    "jupyterlab_widgets",
    "plotly",
    "anywidget",
    "ipykernel",
    "nbval",
    "voila",
)

#: what ``make setup`` (or this command) installs; we check the kernels setting from it
_OVERRIDE_PLUGIN = "@jupyterlab/apputils-extension:kernels-settings"
_OVERRIDE_KEY = "commsOverSubshells"


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return NOT_INSTALLED


def _same_file(a: str | os.PathLike | None, b: str | os.PathLike | None) -> bool:
    if not a or not b:
        return False
    try:
        return os.path.samefile(a, b)
    except OSError:
        return os.path.realpath(a) == os.path.realpath(b)


def _inside(path: str | os.PathLike, prefix: str | os.PathLike) -> bool:
    try:
        Path(path).resolve().relative_to(Path(prefix).resolve())
        return True
    except (ValueError, OSError):
        return False


def torch_report() -> dict[str, Any]:
    """torch version, CUDA availability, device name, CUDA and cuDNN versions (never raises)."""
    out: dict[str, Any] = {
        "version": _version("torch"),
        "cuda_available": False,
        "device_name": None,
        "cuda_version": None,
        "cudnn_version": None,
    }
    if out["version"] == NOT_INSTALLED:
        return out
    try:
        import torch

        out["version"] = torch.__version__
        out["cuda_version"] = torch.version.cuda  # the CUDA torch was built with (None on CPU builds)
        out["cuda_available"] = bool(torch.cuda.is_available())
        if out["cuda_available"]:
            out["device_name"] = torch.cuda.get_device_name(0)
        if torch.backends.cudnn.is_available():
            out["cudnn_version"] = torch.backends.cudnn.version()
    except Exception as exc:  # noqa: BLE001 -- a broken torch install must not break the doctor
        out["error"] = f"{type(exc).__name__}: {exc}"
    return out


def figurewidget_report() -> dict[str, Any]:
    """Can plotly's FigureWidget be created here? (plotly >= 6 needs anywidget for it.)"""
    try:
        import plotly.graph_objects as go

        go.FigureWidget()
        return {"ok": True, "detail": "plotly FigureWidget can be created"}
    except Exception as exc:  # noqa: BLE001 -- reported, never raised
        fix = "pip install anywidget" if _version("anywidget") == NOT_INSTALLED else "reinstall plotly/anywidget"
        return {"ok": False, "detail": f"{type(exc).__name__}: {exc}", "fix": f"{fix} (or: make setup)"}


def shipped_overrides() -> dict:
    """The JupyterLab settings override this package ships (``resources/lab_overrides.json``)."""
    return json.loads(resources.files("sparseopt_edu.resources").joinpath("lab_overrides.json").read_text())


def lab_settings_dir(prefix: str | os.PathLike | None = None) -> Path:
    """Where JupyterLab reads ``overrides.json``: its *app* settings dir (not JUPYTERLAB_SETTINGS_DIR).

    JupyterLab's app dir is ``$JUPYTERLAB_DIR`` if set, else ``<sys.prefix>/share/jupyter/lab``.
    """
    if prefix is None and os.environ.get("JUPYTERLAB_DIR"):
        return Path(os.environ["JUPYTERLAB_DIR"]) / "settings"
    return Path(prefix or sys.prefix) / "share" / "jupyter" / "lab" / "settings"


def overrides_report() -> dict[str, Any]:
    """Is ``commsOverSubshells`` pinned in the JupyterLab settings override of this environment?"""
    path = lab_settings_dir() / "overrides.json"
    wanted = shipped_overrides().get(_OVERRIDE_PLUGIN, {}).get(_OVERRIDE_KEY)
    out: dict[str, Any] = {"path": str(path), "expected": wanted, "value": None, "ok": False}
    fix = f"make setup (or: {Path(sys.executable).name} -m sparseopt_edu.jupyter_setup --prefix {sys.prefix})"
    if not path.exists():
        out.update(detail="override file missing", fix=fix)
        return out
    try:
        current = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        out.update(detail=f"override file unreadable: {exc}", fix=fix)
        return out
    out["value"] = current.get(_OVERRIDE_PLUGIN, {}).get(_OVERRIDE_KEY)
    out["ok"] = out["value"] == wanted
    if out["ok"]:
        out["detail"] = f"{_OVERRIDE_KEY} pinned to {wanted!r}"
    else:
        out.update(detail=f"{_OVERRIDE_KEY} is {out['value']!r}, expected {wanted!r}", fix=fix)
    return out


def _script_python(script: str | os.PathLike) -> str | None:
    """The interpreter named in a console script's shebang (None if unreadable)."""
    try:
        with open(script, "rb") as fh:
            first = fh.readline(4096).decode(errors="replace").strip()
    except OSError:
        return None
    if not first.startswith("#!"):
        return None
    parts = first[2:].split()
    if parts and os.path.basename(parts[0]) == "env" and len(parts) > 1:
        return shutil.which(parts[1])
    return parts[0] if parts else None


def kernel_report() -> dict[str, Any]:
    """Do the ``python3`` kernel and the ``jupyter-lab`` server use this Python's environment?"""
    here = sys.executable
    out: dict[str, Any] = {"sys_executable": here, "sys_prefix": sys.prefix, "ok": True, "problems": []}
    fixes: list[str] = []

    # 1) The kernelspec that "python3" resolves to (JUPYTER_PATH / env / user / system, first wins).
    try:
        from jupyter_client.kernelspec import KernelSpecManager

        spec = KernelSpecManager().get_kernel_spec("python3")
        argv0 = spec.argv[0] if spec.argv else ""
        out["kernelspec_dir"] = spec.resource_dir
        out["kernelspec_argv0"] = argv0
        # jupyter_client replaces a bare "python"/"python3"/"python3.X" with the *server's* sys.executable.
        bare = {"python", f"python{sys.version_info[0]}", "python{}.{}".format(*sys.version_info[:2])}
        if argv0 in bare:
            out["kernel_python"] = f"the server's own Python (bare '{argv0}' in the kernelspec)"
            kernel_ok = True
        else:
            resolved = argv0 if os.path.isabs(argv0) else shutil.which(argv0)
            out["kernel_python"] = resolved or argv0
            kernel_ok = _same_file(resolved, here) or bool(resolved and _inside(resolved, sys.prefix))
        if not kernel_ok:
            out["problems"].append(
                f"the python3 kernel runs {argv0!r} from {spec.resource_dir}, not this environment's {here}"
            )
            fixes.append(
                f"{here} -m ipykernel install --sys-prefix   (and remove {spec.resource_dir} "
                "if it is a user-level kernelspec that still wins)"
            )
    except Exception as exc:  # noqa: BLE001 -- reported, never raised
        out["kernelspec_error"] = f"{type(exc).__name__}: {exc}"
        out["problems"].append("no python3 kernelspec found")
        fixes.append(f"{here} -m ipykernel install --sys-prefix   (or: make setup)")

    # 2) The jupyter-lab script: next to this Python, and the one found first on PATH.
    sibling = Path(here).parent / "jupyter-lab"
    on_path = shutil.which("jupyter-lab")
    out["jupyter_lab_sibling"] = str(sibling) if sibling.exists() else None
    out["jupyter_lab_on_path"] = on_path
    out["jupyter_lab_on_path_python"] = _script_python(on_path) if on_path else None
    if not sibling.exists():
        out["problems"].append(f"JupyterLab is not installed next to {here}")
        fixes.append("make setup   (installs jupyterlab into this environment)")
    elif on_path and not _same_file(on_path, sibling):
        path_python = out["jupyter_lab_on_path_python"]
        if not (_same_file(path_python, here) or (path_python and _inside(path_python, sys.prefix))):
            out["problems"].append(
                f"`jupyter lab` on PATH is {on_path} (Python {path_python}), another environment than {here}"
            )
            fixes.append(f"start JupyterLab with `make lab` or `{sibling}` (or activate {sys.prefix})")

    out["ok"] = not out["problems"]
    out["detail"] = "kernel and server share this environment" if out["ok"] else "; ".join(out["problems"])
    if fixes:
        out["fix"] = " | ".join(fixes)
    return out


def fashion_mnist_report(root: str = "data") -> dict[str, Any]:
    """Whether the real Fashion-MNIST (notebook 05, ``reproduce --dataset fashion_mnist``) is on this machine.

    Only looks for the files (no read, no checksum: that happens when a run loads them). Optional: not part of
    the report's ``ok``.
    """
    try:
        from . import data

        where = data._idx_folder("fashion_mnist", root)
    except Exception as e:  # noqa: BLE001 - the report never raises
        return {"ok": False, "detail": f"could not check ({type(e).__name__}: {e})"}
    if where is None:
        return {"ok": False, "detail": f"not found under {os.path.abspath(root)} nor in {data.DEBIAN_FASHION_MNIST}",
                "fix": f"{data.FASHION_MNIST_APT} (or make setup as root), or --download with internet"}
    return {"ok": True, "detail": f"found in {where}"}


def environment_report() -> dict[str, Any]:
    """Everything ``sparseopt-edu doctor`` prints, as one JSON-serialisable dict."""
    overrides = overrides_report()
    figure = figurewidget_report()
    kernel = kernel_report()
    report: dict[str, Any] = {
        "python": {"version": platform.python_version(), "executable": sys.executable, "prefix": sys.prefix},
        "platform": platform.platform(),
        "torch": torch_report(),
        "packages": {name: _version(name) for name in PACKAGES},
        "figurewidget": figure,
        "lab_overrides": overrides,
        "kernel": kernel,
        "fashion_mnist": fashion_mnist_report(),
    }
    report["ok"] = bool(figure["ok"] and overrides["ok"] and kernel["ok"])
    return report


def format_report(report: dict[str, Any]) -> str:
    """Human-readable text for ``environment_report()``'s dict."""
    py, t = report["python"], report["torch"]
    lines = [
        f"Python              {py['version']}  ({py['executable']})",
        f"torch               {t['version']}",
        f"  CUDA available    {t['cuda_available']}" + (f"  ({t['device_name']})" if t["device_name"] else ""),
        f"  CUDA (build)      {t['cuda_version'] or '-'}",
        f"  cuDNN             {t['cudnn_version'] or '-'}",
    ]
    if t.get("error"):
        lines.append(f"  error             {t['error']}")
    lines += [f"{name:<20}{version}" for name, version in report["packages"].items()]
    lines.append("")
    for title, key in (
        ("plotly FigureWidget", "figurewidget"),
        ("JupyterLab override", "lab_overrides"),
        ("kernel / server", "kernel"),
        ("Fashion-MNIST", "fashion_mnist"),
    ):
        item = report.get(key)
        if item is None:
            continue
        lines.append(f"{title:<20}{'OK' if item['ok'] else 'PROBLEM'}: {item['detail']}")
        if key == "lab_overrides":
            lines.append(f"{'':<20}{item['path']}")
        if item.get("fix"):
            lines.append(f"{'':<20}fix: {item['fix']}")
    lines.append("")
    lines.append("All good." if report["ok"] else "Some checks failed: see the fix lines above.")
    return "\n".join(lines)
