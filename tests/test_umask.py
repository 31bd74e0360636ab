"""Run files get the mode a plain open() gives, and reading the umask never changes it (issue 15 item 8).

runs.py used to call ``os.umask(0)`` and set it back at import: between the two calls any file another thread
created got mode 0666. Now it reads the mask (/proc/self/status on Linux, else a probe file) and never sets it.
"""
from __future__ import annotations

import os
import stat
import subprocess
import sys
import textwrap

import pytest

from sparseopt_edu.train import runs

posix = pytest.mark.skipif(os.name != "posix", reason="file modes and umasks are POSIX")


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@posix
def test_import_and_writes_never_call_os_umask(tmp_path):
    """In a fresh interpreter with os.umask made to fail: importing runs, writing a file and taking a lock work,
    and the files get 0666/0644 minus the mask set before."""
    script = textwrap.dedent(f"""
        import os
        os.umask(0o027)
        def refuse(mask):
            raise AssertionError("os.umask called")
        os.umask = refuse
        from sparseopt_edu.train import runs
        assert runs.current_umask() == 0o027, oct(runs.current_umask())
        runs.atomic_write_text({str(tmp_path / "config.json")!r}, "{{}}")
        with runs.RunLock({str(tmp_path)!r}):
            pass
        print("ok")
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "ok" in proc.stdout, proc.stderr[-2000:]
    assert _mode(tmp_path / "config.json") == 0o640
    assert _mode(tmp_path / ".lock") == 0o640


@posix
def test_current_umask_follows_a_later_change(tmp_path):
    old = os.umask(0o077)
    try:
        if os.path.exists(runs.PROC_STATUS):
            assert runs.current_umask() == 0o077
        runs.atomic_write_text(tmp_path / "a.json", "{}")
    finally:
        os.umask(old)
    if os.path.exists(runs.PROC_STATUS):
        assert runs.current_umask() == old
        assert _mode(tmp_path / "a.json") == 0o600


@posix
def test_without_proc_a_probe_file_reads_the_mask_once(monkeypatch, tmp_path):
    old = os.umask(0o027)
    try:
        monkeypatch.setattr(runs, "PROC_STATUS", str(tmp_path / "no-such-status"))
        monkeypatch.setattr(runs, "_probed_umask", None)
        calls = []
        real_probe = runs._probe_umask
        monkeypatch.setattr(runs, "_probe_umask", lambda: (calls.append(1), real_probe())[1])
        monkeypatch.setattr(os, "umask", lambda mask: pytest.fail("os.umask called"))
        assert runs.current_umask() == 0o027 and runs.current_umask() == 0o027
        assert len(calls) == 1  # computed once, then cached
        runs.atomic_write_text(tmp_path / "h.json", "{}")
        assert _mode(tmp_path / "h.json") == 0o640
        assert not [p for p in os.listdir(tmp_path) if p.startswith(runs.TMP_PREFIX)]
    finally:
        monkeypatch.undo()
        os.umask(old)
