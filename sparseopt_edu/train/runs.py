"""Run folders ``runs/<name>/``: config.json, history.json, history.csv, checkpoint.pt, all written atomically.

A run writes config.json when it starts and its history after every epoch, so a run killed at any point (SIGKILL,
the OOM killer, a full disk) can be resumed. While a process uses a folder it holds ``<run>/.lock`` (``flock``:
the kernel drops it when the process dies, so a lock is never stale). A write that fails names the file and why
and leaves the previous file as it was.
"""
from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import signal
import socket
import stat
import tempfile
import threading
import unicodedata

try:
    import fcntl
except ImportError:  # Windows: a lock file whose pid is dead is taken over instead
    fcntl = None

PROC_STATUS = "/proc/self/status"  # Linux >= 4.7 shows the umask there ("Umask:\t0022")
_probe_lock = threading.Lock()
_probed_umask: int | None = None


def current_umask() -> int:
    """The process's umask, read without changing it.

    ``os.umask`` can only read the mask by setting a new one; setting it and back, even at import, gives any file
    another thread creates in between the wrong mode. Linux shows the mask in /proc/self/status (read at every
    call, so a later ``os.umask`` by the user is followed); elsewhere a probe file in a fresh private folder shows
    it once (cached; a process changing its umask later is not followed there).
    """
    try:
        with open(PROC_STATUS) as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    global _probed_umask
    with _probe_lock:
        if _probed_umask is None:
            _probed_umask = _probe_umask()
        return _probed_umask


def _probe_umask() -> int:
    """Create a file with mode 0777 and see which bits the kernel took away."""
    folder = tempfile.mkdtemp(prefix=TMP_PREFIX + "umask-")
    try:
        path = os.path.join(folder, "probe")
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o777))
        return 0o777 & ~stat.S_IMODE(os.stat(path).st_mode)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _public(path: str) -> None:
    """mkstemp creates files 0600; give them the permissions a plain open() would (0666 minus the umask)."""
    os.chmod(path, 0o666 & ~current_umask())

CONFIG = "config.json"
HISTORY_JSON = "history.json"
HISTORY_CSV = "history.csv"
CHECKPOINT = "checkpoint.pt"
LOCK = ".lock"
TMP_PREFIX = ".tmp-"
RECORDS = (CONFIG, HISTORY_JSON, HISTORY_CSV, CHECKPOINT)
MAX_NAME = 100


# ----- errors ---------------------------------------------------------------------------------------------
class RunWriteError(OSError):
    """A file of a run could not be written; the message names it and why. The previous file is left as it was."""

    def __init__(self, path, why: str, code: int | None = None):
        super().__init__(code or 0, why)
        self.path, self.why = os.fspath(path), why

    def __str__(self) -> str:
        return f"could not write {self.path}: {self.why}"


class RunInUseError(RuntimeError):
    """Another live process holds the run folder's lock."""


def _why(e: BaseException, folder: str) -> tuple[str, int | None]:
    """A short reason for a failed write: disk full, permission, read-only, ... (and the errno)."""
    code = getattr(e, "errno", None)
    reasons = {errno.ENOSPC: "the disk is full (no space left on device)", errno.EDQUOT: "the disk quota is exceeded",
               errno.EACCES: "permission denied", errno.EPERM: "permission denied",
               errno.EROFS: "the file system is read-only", errno.ENOTDIR: "a part of the path is a file, not a folder",
               errno.EISDIR: "the path is a folder"}
    if code in reasons:
        return reasons[code], code
    first = (str(e).strip().splitlines() or [type(e).__name__])[0]
    try:
        free = shutil.disk_usage(folder).free
    except OSError:
        free = None
    if free is not None and free < 16 * 2**20:  # torch.save on a full disk: "enforce fail at inline_container.cc"
        return f"the disk is probably full ({free / 2**20:.1f} MiB free; {type(e).__name__}: {first})", errno.ENOSPC
    return f"{type(e).__name__}: {first}", code


def atomic_write(path, write) -> None:
    """Call ``write(tmp_path)`` on a temporary file in the same folder, then ``os.replace`` it onto ``path``.

    Readers never see half a file, and a crash while writing leaves the previous file as it was. An OS error
    (or torch.save's RuntimeError on a full disk) becomes a :class:`RunWriteError` naming the file and why.
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    try:
        os.makedirs(folder, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=TMP_PREFIX, suffix=os.path.basename(path))
    except OSError as e:
        raise RunWriteError(path, *_why(e, folder)) from e
    os.close(fd)
    try:
        write(tmp)
        _public(tmp)
        with open(tmp, "rb+") as fh:  # on disk before the rename: a power cut leaves the old file or the new one
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(e, (OSError, RuntimeError)) and not isinstance(e, RunWriteError):
            raise RunWriteError(path, *_why(e, folder)) from e
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


@contextlib.contextmanager
def signals_held():
    """Ctrl-C and SIGTERM wait until the block ends, then act as they would have (the handler in force is called;
    the default action of SIGTERM then ends the process). For a run's closing writes: a signal that landed in
    them left history.json as of the last epoch and no row in a grid's results, though the run had ended. Signals
    reach Python's main thread only, so elsewhere this does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []
    previous = {}
    for sig in (signal.SIGINT, signal.SIGTERM):
        handler = signal.getsignal(sig)
        if handler is not None:  # None: installed outside Python; leave it alone
            previous[sig] = handler
            signal.signal(sig, lambda signum, frame: caught.append(signum))
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        raised = None
        for sig in dict.fromkeys(caught):  # each once, in the order they came; every handler gets its signal
            handler = previous[sig]
            try:
                if callable(handler):
                    handler(sig, None)  # Python's Ctrl-C handler (the CLI's SIGTERM one) raises KeyboardInterrupt
                elif handler == signal.SIG_DFL:
                    signal.raise_signal(sig)
            except BaseException as e:  # noqa: BLE001 - raised below, once the other handlers have run
                raised = raised or e
        if raised is not None:
            raise raised


# ----- checks before any work -----------------------------------------------------------------------------
def check_name(name: str) -> str:
    """A run name is one plain folder name: refuse paths, ``.``/``..``, control characters, over 100 characters."""
    problem = None
    if not isinstance(name, str) or not name.strip():
        problem = "is empty"
    elif name in (".", ".."):
        problem = "is a special folder name"
    elif any(sep in name for sep in ("/", "\\", os.sep, os.altsep or "/")):
        problem = "contains a path separator (a name is one folder under --runs)"
    elif any(unicodedata.category(c).startswith("C") for c in name):
        problem = "contains a control character (newline, tab, ...)"
    elif len(name) > MAX_NAME:
        problem = f"is {len(name)} characters long (at most {MAX_NAME})"
    elif name != name.strip():
        problem = "starts or ends with a space"
    if problem:
        shown = repr(name) if len(str(name)) <= 60 else repr(name[:40]) + "..."
        raise ValueError(f"run name {shown} {problem}: use a plain folder name such as rigl-s90 (letters, "
                         f"digits, '-', '_', '.'; at most {MAX_NAME} characters); the parent folder is --runs")
    return name


def check_writable(folder) -> None:
    """Create ``folder`` and a file in it (then remove it): fail before training, not after, naming the fix."""
    folder = os.fspath(folder)
    try:
        os.makedirs(folder, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=TMP_PREFIX + "check-")
        os.close(fd)
        os.unlink(tmp)
    except OSError as e:
        why, code = _why(e, folder if os.path.isdir(folder) else os.path.dirname(os.path.abspath(folder)))
        raise RunWriteError(folder, f"{why}; choose a writable folder (--runs / --out) or fix its permissions",
                            code) from e


def clean_temp(run_dir) -> list[str]:
    """Remove the ``.tmp-*`` files a killed writer left in ``run_dir`` (call it holding the folder's lock)."""
    removed = []
    with contextlib.suppress(FileNotFoundError):
        for entry in os.scandir(run_dir):
            if entry.name.startswith(TMP_PREFIX) and entry.is_file(follow_symlinks=False):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(entry.path)
                    removed.append(entry.name)
    return removed


def existing_run(run_dir) -> dict | None:
    """What a folder holds of a run: None when it holds none of its records, else the history's reason (None if
    unreadable), the epochs done and planned."""
    if not any(os.path.isfile(os.path.join(run_dir, f)) for f in RECORDS):
        return None
    info = {"reason": None, "epochs_done": None, "epochs": None}
    with contextlib.suppress(OSError, ValueError):
        with open(os.path.join(run_dir, HISTORY_JSON)) as fh:
            h = json.load(fh)
        info.update(reason=h.get("reason"), epochs_done=len(h.get("epoch", [])))
    with contextlib.suppress(OSError, ValueError):
        with open(os.path.join(run_dir, CONFIG)) as fh:
            info["epochs"] = json.load(fh).get("epochs")
    return info


def clear_run(run_dir) -> None:
    """Remove a run's records (``--overwrite``); refuses while another process uses the folder."""
    with RunLock(run_dir):
        for f in RECORDS:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(os.path.join(run_dir, f))
        clean_temp(run_dir)


# ----- the folder lock ------------------------------------------------------------------------------------
def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


class RunLock:
    """An exclusive lock on a run folder: ``flock`` on ``<run>/.lock``, which holds the owner's pid and host.

    Two processes (or two Trainers of one process) cannot use one folder at once. The kernel releases a flock
    when its process dies, SIGKILL included, so a dead owner never blocks a resume. Where flock is unavailable
    the pid written in the file decides: a lock whose process is gone is stale and is taken over.
    """

    def __init__(self, run_dir):
        self.run_dir = os.fspath(run_dir)
        self.path = os.path.join(self.run_dir, LOCK)
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def _owner(self) -> str:
        with contextlib.suppress(OSError):
            with open(self.path) as fh:
                return fh.read().strip()
        return ""

    def _refuse(self, owner: str):
        who = f"process {owner.split()[0]}" + (f" on {owner.split()[1]}" if len(owner.split()) > 1 else "") \
            if owner else "another process"
        return RunInUseError(f"run folder {self.run_dir} is in use by {who}: wait for that run to end (or stop "
                             "it), or use another --name")

    def acquire(self) -> RunLock:
        if self._fd is not None:
            return self
        os.makedirs(self.run_dir, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)  # the kernel applies the umask
        try:
            if fcntl is not None:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    raise self._refuse(self._owner()) from None
            else:
                owner = self._owner().split()
                if owner and owner[0].isdigit() and int(owner[0]) != os.getpid() and _alive(int(owner[0])):
                    raise self._refuse(" ".join(owner))
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()} {socket.gethostname()}\n".encode())
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        return self

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is None:
            return
        # the file stays: removing it would let a waiter lock a deleted inode while a newcomer locks a new one
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
        if fcntl is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()

    def __del__(self):
        self.release()
