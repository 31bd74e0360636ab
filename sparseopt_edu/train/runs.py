"""Run folders ``runs/<name>/``: config.json, history.json, history.csv, checkpoint.pt, all written atomically."""
from __future__ import annotations

import os
import tempfile

_UMASK = os.umask(0)
os.umask(_UMASK)


def _public(path: str) -> None:
    """mkstemp creates files 0600; give them the permissions a plain open() would (0666 minus the umask)."""
    os.chmod(path, 0o666 & ~_UMASK)

CONFIG = "config.json"
HISTORY_JSON = "history.json"
HISTORY_CSV = "history.csv"
CHECKPOINT = "checkpoint.pt"


def atomic_write_text(path, text: str) -> None:
    """Write to a temporary file in the same folder, then ``os.replace``: readers never see half a file."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=os.path.basename(path))
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        _public(tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_records(run_dir, config, history) -> None:
    """config.json, history.json and history.csv of one run."""
    os.makedirs(run_dir, exist_ok=True)
    config.to_json(os.path.join(run_dir, CONFIG))
    history.to_json(os.path.join(run_dir, HISTORY_JSON))
    history.to_csv(os.path.join(run_dir, HISTORY_CSV))
