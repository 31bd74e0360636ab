"""A compile cache that outlives the process, so ``compile=True`` pays its long first epoch once per machine.

Why: with ``compile=True`` (max-autotune) the first epoch generates and benchmarks kernels (123 s for ResNet-20 on
an H200, issue 17). Inductor can skip that work in a later process: its FX graph cache (the compiled code), the
AOTAutograd cache (the forward/backward split) and the autotune cache (which kernel won) all live in one folder.
By default that folder is under the system temp dir (``/tmp/torchinductor_<user>``), which reboots and temp
cleaners empty; this module points it at a per-user folder under ``~/.cache`` (``$XDG_CACHE_HOME`` if set) and
switches the three local caches on. A folder the user chose (``TORCHINDUCTOR_CACHE_DIR``) is kept.

Call :func:`enable_persistent_cache` before the first ``torch.compile`` call of the process (Triton's kernels go
to ``<folder>/triton`` unless ``TRITON_CACHE_DIR`` is set). CPU-only and never-compiled runs need not call it.
"""
from __future__ import annotations

import os
import warnings

ENV = "TORCHINDUCTOR_CACHE_DIR"  # Inductor's own variable: the user's choice, and what we set


def default_dir() -> str:
    """``$XDG_CACHE_HOME/sparseopt-edu/inductor``, else ``~/.cache/sparseopt-edu/inductor``."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "sparseopt-edu", "inductor")


def enable_persistent_cache(path: str | os.PathLike | None = None) -> str | None:
    """Keep Inductor's compile and autotune results in a lasting folder; returns the folder in use.

    ``path`` wins; else a ``TORCHINDUCTOR_CACHE_DIR`` the user set; else :func:`default_dir`. A folder that cannot
    be created or written leaves Inductor's default in place, with a warning (returns None then).
    """
    folder = os.fspath(path) if path is not None else (os.environ.get(ENV) or default_dir())
    folder = os.path.abspath(os.path.expanduser(folder))
    try:
        os.makedirs(folder, exist_ok=True)
        if not os.access(folder, os.W_OK):
            raise PermissionError(f"no write permission on {folder}")
    except OSError as e:
        warnings.warn(f"compile cache folder {folder} is not usable ({e}); compiled runs will compile from scratch "
                      f"in every new process. Set {ENV} to a writable folder to keep them.", stacklevel=2)
        return None
    os.environ[ENV] = folder
    import torch._functorch.config as functorch_config
    import torch._inductor.config as inductor_config

    inductor_config.fx_graph_cache = True
    inductor_config.autotune_local_cache = True
    if hasattr(functorch_config, "enable_autograd_cache"):  # torch >= 2.5
        functorch_config.enable_autograd_cache = True
    return folder


def cache_counters() -> dict:
    """Inductor's cache hits and misses so far in this process (FX graph, AOTAutograd), for benchmarks."""
    from torch._dynamo.utils import counters

    return {f"{group}.{key}": int(value) for group in ("inductor", "aot_autograd")
            for key, value in counters[group].items() if "cache" in key}
