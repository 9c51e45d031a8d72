"""The lock that keeps one process per run folder: fcntl.flock on FOLDER/.lock, held for the process's life and
released by the OS when it dies (a crash never leaves a stale lock); the pid in the file names the holder."""

from __future__ import annotations

import errno
import fcntl
import os
from pathlib import Path

from rotnet.errors import InUse, RotnetError
from rotnet.files import read_regular
from rotnet.layout import LOCK

IN_USE = "is in use by another rotnet process"


def in_use(folder: Path, pid: str, purpose: str = "") -> InUse:
    """The one way rotnet says that another process holds a folder: which folder, its pid, what to do (`purpose`:
    what this command would have done, e.g. "verify")."""
    what = f"cannot {purpose} {folder}: it" if purpose else str(folder)
    return InUse(f"{what} {IN_USE} (pid {pid}); wait for it to finish or stop it")


def refuse_locked(folder: Path, purpose: str = "") -> None:
    """Refuse a folder another process holds: a run it trains, or seals a probe into, is that process's to write,
    and its record is changing under any reader."""
    pid = is_locked(folder)
    if pid:
        raise in_use(Path(folder), pid, purpose)


class RunLock:
    """An exclusive lock on a run folder for one process's life (fcntl.flock on FOLDER/.lock).

    The OS releases it when the process dies, so a crash never leaves a stale lock; the pid in the file names the
    holder in the error a second process gets.
    """

    def __init__(self, folder: Path):
        self.path = Path(folder) / LOCK
        self.fd: int | None = None

    def acquire(self) -> RunLock:
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
        except OSError as e:
            raise RotnetError(f"cannot lock {self.path.parent} ({e.strerror or e})") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            os.close(fd)
            if e.errno not in (errno.EWOULDBLOCK, errno.EACCES):
                raise RotnetError(f"cannot lock {self.path.parent} ({e.strerror or e})") from None
            raise in_use(self.path.parent, holder(self.path)) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self.fd = fd
        return self

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)  # closing the descriptor releases the flock
            self.fd = None

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def holder(lock_file: Path) -> str:
    """The pid the lock file names ("unknown" if it names none, or is not a regular file rotnet wrote)."""
    try:
        return read_regular(lock_file, follow=False).decode().strip() or "unknown"
    except (RotnetError, UnicodeDecodeError):
        return "unknown"


def is_locked(folder: Path) -> str | None:
    """The holder's pid if another process holds folder's lock, else None. It only looks: a shared lock tried on a
    read-only descriptor (the lock file is not written, so a run on a read-only disk is read as any other). flock is
    per open file: a lock this process holds through another descriptor counts too (callers that hold it say so)."""
    path = Path(folder) / LOCK
    if not path.is_file():
        return None
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:  # gone, or replaced by a link since: no process of rotnet's holds it
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError as e:
        if e.errno in (errno.EWOULDBLOCK, errno.EACCES):
            return holder(path)
        return None
    finally:
        os.close(fd)  # and with it the shared lock
    return None
