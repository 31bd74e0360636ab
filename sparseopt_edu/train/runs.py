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


def atomic_write(path, write) -> None:
    """Call ``write(tmp_path)`` on a temporary file in the same folder, then ``os.replace`` it onto ``path``.

    Readers never see half a file, and a crash while writing leaves the previous file as it was.
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=os.path.basename(path))
    os.close(fd)
    try:
        write(tmp)
        _public(tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_text(path, text: str) -> None:
    def write(tmp):
        with open(tmp, "w") as fh:
            fh.write(text)

    atomic_write(path, write)


def write_records(run_dir, config, history) -> None:
    """config.json, history.json and history.csv of one run."""
    os.makedirs(run_dir, exist_ok=True)
    config.to_json(os.path.join(run_dir, CONFIG))
    history.to_json(os.path.join(run_dir, HISTORY_JSON))
    history.to_csv(os.path.join(run_dir, HISTORY_CSV))
