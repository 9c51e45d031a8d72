"""The one file layer: how rotnet opens what it reads from a user's folders and what it writes under a root.

- Reading a user's file (an image, a dataset file, a TOML, weights): `open_regular` opens it without blocking and
  checks, on the descriptor that is then read, that it is a regular file; a FIFO, a socket, a device or a folder is
  refused by name, never read (a FIFO named x.png would block forever, /dev/zero never end).
- Writing under a root (a runs root, a run folder, an export or cache folder): `open_dir` walks from the root one
  component at a time with O_NOFOLLOW | O_DIRECTORY on directory descriptors, so a link that rotnet did not make
  (it makes none) is refused rather than followed, and nothing checked can be swapped before it is used;
  `atomic_write` creates its temporary file and renames it relative to that descriptor, and `open_regular(base=)`
  reads rotnet's own files back the same way; a folder of many files (an export) is written whole or not at all
  (`staged_folder`).
- A file's sha256 (`sha256_file`), remembered per process while the file stays the same, and filled in by
  `read_file` as it reads: a record check after a load reads nothing again.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import secrets
import shutil
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from rotnet.errors import RotnetError

DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def user_path(named: str | os.PathLike) -> Path:
    """A path a user named, read as a shell reads one: `~` and `~user` expanded, as torchvision's datasets expand
    their root. A quoted "~/runs", `--runs-root=~/runs` (no shell expands a `~` after `=`), `$ROTNET_DATA` set to
    "~/data" or `runs_root="~/runs"` in Python named a folder called `~` in the working folder. Anything but text
    or a path (`runs_root=123`, bytes) is one RotnetError, not os.fspath's TypeError."""
    text = os.fspath(named) if isinstance(named, str | os.PathLike) else None
    if not isinstance(text, str):  # bytes too
        raise RotnetError(f"{named!r} is not a path; name a folder or a file")
    if "\0" in text:  # no system call takes one: a ValueError wherever the path was first used
        raise RotnetError(f"{text!r} is not a path (it holds a NUL character); name a folder or a file")
    path = Path(os.path.expanduser(text))
    try:  # following links, as every use of a user's path does
        os.stat(path)
    except OSError as e:
        if e.errno in UNUSABLE:  # else missing (a folder to make) or a file on the way: each use says which
            why = UNUSABLE[e.errno]
            raise RotnetError(f"{shown_path(text)} cannot be used: {why}; name a folder or a file") from None
    return path


# What makes a path no use to any command, found where it is named rather than by whichever call meets it first: a
# link loop made `Path.resolve` raise RuntimeError (Python < 3.13) in the middle of export, train or verify.
UNUSABLE = {
    errno.ELOOP: "a link on its way leads back to itself (a link loop)",
    errno.ENAMETOOLONG: "it is longer than this system allows a path or a name in it to be",
}


def shown_path(text: str, most: int = 100) -> str:
    """A path for a message, its middle left out when it is too long to read."""
    return text if len(text) <= most else f"{text[: most - 30]}...{text[-20:]} ({len(text):,} characters)"


def kind(mode: int) -> str:
    """A file's kind in words, for messages."""
    kinds = [(stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"),
             (stat.S_ISCHR, "a device"), (stat.S_ISBLK, "a device"), (stat.S_ISLNK, "a link")]  # fmt: skip
    return next((word for test, word in kinds if test(mode)), "not a regular file")


def open_regular(path: Path | str, *, follow: bool = True, base: Path | None = None) -> BinaryIO:
    """A file opened for reading, only if it is a regular file, checked on the descriptor that is then read.
    follow=False also refuses a link (rotnet's own records: it writes none); `base` (a folder above it, e.g. the
    runs root) reaches it as `open_dir` does, one folder descriptor at a time through no link (implies follow=False)."""
    flags = os.O_RDONLY | (0 if follow and base is None else os.O_NOFOLLOW)
    return os.fdopen(regular_fd(path, flags, base), "rb")


def open_append(path: Path, base: Path) -> BinaryIO:
    """A log file opened for appending (made if missing, with the folders to it), reached from `base` through no
    link and never through a link at its own name; anything but a regular file there is refused."""
    return os.fdopen(regular_fd(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, base), "ab")


def regular_fd(path: Path | str, flags: int, base: Path | None) -> int:
    """`open_regular`'s and `open_append`'s descriptor: opened with `flags` without waiting (a FIFO), reached from
    `base` as `open_dir` does (folders made when writing), and kept only if it is a regular file."""
    write = bool(flags & (os.O_WRONLY | os.O_RDWR))
    flags |= os.O_NONBLOCK | os.O_CLOEXEC
    try:
        if base is not None:
            dfd = open_dir(Path(path).parent, base, create=write)
            try:
                fd = os.open(Path(path).name, flags, 0o666, dir_fd=dfd)
            finally:
                os.close(dfd)
        else:
            fd = os.open(path, flags, 0o666)
    except FileNotFoundError:
        raise RotnetError(f"{path} not found") from None
    except OSError as e:
        if e.errno == errno.ELOOP:
            through = "writes nothing through it: remove it" if write else "reads nothing through it"
            raise RotnetError(f"{path} is a link rotnet did not make; it {through}") from None
        with contextlib.suppress(OSError):  # e.g. a socket (ENXIO): say what it is
            if not stat.S_ISREG(mode := os.stat(path).st_mode):
                raise RotnetError(f"{path} is {kind(mode)}, not a regular file") from None
        raise RotnetError(f"cannot {'write' if write else 'read'} {path}: {e.strerror or e}") from None
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        raise RotnetError(f"{path} is {kind(mode)}, not a regular file")
    os.set_blocking(fd, True)
    return fd


def read_regular(path: Path | str, *, follow: bool = True, base: Path | None = None) -> bytes:
    """A regular file's bytes (see `open_regular`)."""
    with open_regular(path, follow=follow, base=base) as f:
        try:
            return f.read()
        except OSError as e:
            raise RotnetError(f"cannot read {path}: {e.strerror or e}") from None


def file_in_the_way(path: Path, fix: str = "name a folder") -> RotnetError | None:
    """The error for the first of path's parents (or path itself) that exists and is no folder, "X is a file, not a
    folder": the runs root `notes.txt` said "cannot open notes.txt: Not a directory", and `notes.txt/runs` that it
    was not writable. None where nothing is in the way."""
    path = Path(path)
    for p in [*reversed(path.parents), path]:
        if p.exists() and not p.is_dir():
            return RotnetError(f"{p} is a file, not a folder; {fix}")
    return None


def make_folder(path: Path) -> None:
    """mkdir -p, refused in one line: a file in the way is named, any other failure says why."""
    try:
        Path(path).mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise file_in_the_way(path) or RotnetError(f"cannot create {path} ({e.strerror or e})") from None


def open_dir(path: Path, base: Path | None = None, *, create: bool = False) -> int:
    """A descriptor of the folder `path`, reached from `base` (the folder the user named; default: path itself) one
    component at a time, never through a link; missing folders are made when create. The caller closes it."""
    path = Path(path)
    base = Path(base) if base is not None else path
    parts, verb = path.relative_to(base).parts, "write" if create else "open"
    try:
        if create:
            base.mkdir(parents=True, exist_ok=True)
        fd = os.open(base, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)  # the named folder itself may be a link
    except OSError as e:
        raise file_in_the_way(base) or RotnetError(f"cannot {verb} {base}: {e.strerror or e}") from None
    current = base
    try:
        for part in parts:
            current = current / part
            if create:
                with contextlib.suppress(FileExistsError):
                    os.mkdir(part, 0o777, dir_fd=fd)
            step = os.open(part, DIR_FLAGS, dir_fd=fd)
            os.close(fd)
            fd = step
    except OSError as e:
        os.close(fd)
        if e.errno in (errno.ELOOP, errno.ENOTDIR) and is_link(current):
            raise RotnetError(
                f"{current} is a link rotnet did not make; it writes nothing through it: remove it"
            ) from None
        raise file_in_the_way(current) or RotnetError(f"cannot {verb} {current}: {e.strerror or e}") from None
    return fd


def is_link(path: Path) -> bool:
    with contextlib.suppress(OSError):
        return stat.S_ISLNK(os.lstat(path).st_mode)
    return False


def refuse_links(path: Path, base: Path) -> None:
    """Raise if path, or a folder between base and it, is a link (rotnet makes none, so one there was planted)."""
    path, base = Path(path), Path(base)
    parts = path.relative_to(base).parts
    if not parts or not os.path.lexists(base):  # nothing made yet: no link on the way
        return
    existing = base
    for part in parts[:-1]:  # the deepest folder on the way that exists (a missing one holds no link)
        if not os.path.lexists(existing / part):
            break
        existing = existing / part
    fd = open_dir(existing, base)  # refuses a link on the way to it
    try:
        if len(parts) == len(existing.relative_to(base).parts) + 1:
            with contextlib.suppress(FileNotFoundError):
                if stat.S_ISLNK(os.stat(parts[-1], dir_fd=fd, follow_symlinks=False).st_mode):
                    raise RotnetError(f"{path} is a link rotnet did not make; it writes nothing through it: remove it")
    finally:
        os.close(fd)


@contextlib.contextmanager
def staged_folder(out: Path) -> Iterator[Path]:
    """A folder written whole or not at all: the caller writes into a hidden folder, which becomes `out` once every
    file is written. On an error or a Ctrl-C it is removed with the folders made for it, and nothing is at `out`: an
    export stopped halfway had left a folder of some of its images, which a later run read as the whole dataset.
    `out` may exist only as an empty folder (layout.refuse_output_folder checks it first): that one is filled, not
    replaced (it may be a shell's working folder, `export-images cifar10 .`, or a link), from a hidden folder inside
    it, entry by entry at the end; a new one is the hidden folder beside it, renamed."""
    out = Path(os.path.abspath(out))  # `.` and `..` name the folder itself, never a place beside it
    existing = out.is_dir()
    home, made = (out, None) if existing else (out.parent, first_missing(out.parent))
    make_folder(home)
    stage = home / f".{out.name}.partial-{secrets.token_hex(4)}"  # hidden: no image listing reads it
    moved: list[Path] = []
    try:
        stage.mkdir()
        yield stage
        try:
            if not existing:
                os.rename(stage, out)
                return
            for entry in sorted(os.listdir(stage)):
                os.rename(stage / entry, out / entry)
                moved.append(out / entry)
            stage.rmdir()
        except OSError as e:
            raise RotnetError(f"cannot write {out} ({e.strerror or e}): another command wrote it meanwhile?") from None
    except BaseException:
        for path in [stage, *moved]:
            shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)
        if made is not None:
            shutil.rmtree(made, ignore_errors=True)
        raise


def first_missing(folder: Path) -> Path | None:
    """The outermost of folder and its parents that does not exist yet (None: folder exists)."""
    missing = None
    while not folder.exists():
        missing, folder = folder, folder.parent
    return missing


def atomic_write(
    path: Path, data: bytes | list, *, base: Path | None = None, replace: bool = True, sync: bool = True
) -> None:
    """Write path via a temporary file, fsync, rename over the target, fsync the folder: a reader sees the old file
    or the new one, never half of one, and a full disk leaves the old file untouched. The folder is reached from
    `base` through no link (`open_dir`; default: the folder itself); the temporary file is made in it with O_EXCL |
    O_NOFOLLOW and renamed relative to its descriptor, so a link planted anywhere on the way is refused and one in
    the folder is replaced, never written through. `data` may be a list of buffers (hashing them is the caller's:
    a sealed write hashes before it writes, and a second pass over a checkpoint's bytes cost 5% of a tiny run).
    replace=False never replaces an existing file: FileExistsError if there is one. sync=False skips the fsyncs
    (thousands of exported images: a crash leaves a folder to delete, not a record to trust)."""
    path = Path(path)
    dfd = open_dir(path.parent, base if base is not None else path.parent, create=True)
    tmp = f".{path.name}.{os.getpid()}.{os.urandom(4).hex()}.tmp"
    try:
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o666, dir_fd=dfd)
        except OSError as e:
            raise RotnetError(f"cannot write {path}: {e.strerror or e}") from None
        try:
            with os.fdopen(fd, "wb") as f:
                for part in data if isinstance(data, list) else [data]:
                    f.write(part)
                f.flush()
                if sync:
                    os.fsync(f.fileno())
            if replace:
                os.replace(tmp, path.name, src_dir_fd=dfd, dst_dir_fd=dfd)
            else:
                os.link(tmp, path.name, src_dir_fd=dfd, dst_dir_fd=dfd, follow_symlinks=False)  # fails if it exists
                os.unlink(tmp, dir_fd=dfd)
        except FileExistsError:
            with contextlib.suppress(OSError):
                os.unlink(tmp, dir_fd=dfd)
            raise
        except OSError as e:
            with contextlib.suppress(OSError):  # a read-only or full folder: the first error is the one to show
                os.unlink(tmp, dir_fd=dfd)
            raise RotnetError(f"cannot write {path}: {e.strerror or e}") from None
        with contextlib.suppress(OSError):  # durability of the rename; some filesystems refuse a directory fsync
            if sync:
                os.fsync(dfd)
    finally:
        os.close(dfd)


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write(path, text.encode())


# sha256 of a file's bytes, by what identifies its contents on disk (file_key): a command checks a run's record and
# reads its weights without reading any file twice (a rewrite gives a new inode, size or mtime, so a new key).
_SHA256: dict[tuple, str] = {}


def file_key(st: os.stat_result, path: Path) -> tuple:
    return (str(Path(path).absolute()), st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


def sha256_file(path: Path) -> str:
    """The sha256 of one of rotnet's own files (weights, a checkpoint, a probe's results), opened as `open_regular`
    does without following a link: anything else raises RotnetError, never waits or reads without end. Read once
    per process while the file stays the same (known by a stat, without opening it)."""
    with contextlib.suppress(OSError):
        known = _SHA256.get(file_key(os.stat(path, follow_symlinks=False), path))
        if known is not None:
            return known
    with open_regular(path, follow=False) as f:
        key = file_key(os.fstat(f.fileno()), path)  # what is read: a file swapped since the stat is hashed as itself
        h = hashlib.sha256()
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
        _SHA256[key] = h.hexdigest()
    return _SHA256[key]


def read_file(path: Path, *, follow: bool = True, base: Path | None = None) -> bytes:
    """A regular file's bytes, read once, its sha256 remembered for `sha256_file` (the record check that follows a
    load then reads nothing again)."""
    with open_regular(path, follow=follow, base=base) as f:  # a FIFO or a device is refused, not read
        st = os.fstat(f.fileno())
        data = f.read()
    _SHA256[file_key(st, path)] = hashlib.sha256(data).hexdigest()
    return data
