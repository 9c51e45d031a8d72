"""What Ctrl-C, SIGTERM and SIGHUP (the terminal closed) do while rotnet works, always undone after (torch-free: the
command line holds them while torch loads). Outside these blocks the caller's handlers apply, so a notebook's Ctrl-C
interrupts as usual."""

from __future__ import annotations

import contextlib
import os
import signal
from dataclasses import dataclass

# SIGHUP too: a closed terminal or ssh session sends it, and its default ends the process where it stands, losing
# every step since the last checkpoint (`nohup` starts rotnet ignoring it, which stays so).
STOP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name))


def _terminals() -> list[int]:
    """The standard output and error that are terminals now."""
    return [fd for fd in (1, 2) if _is_terminal(fd)]


def _is_terminal(fd: int) -> bool:
    try:
        return os.isatty(fd)
    except OSError:
        return False


def _leave_hung_up(terminals: list[int]) -> None:
    """Point each of `terminals` that has hung up at /dev/null. Every write to a closed terminal fails (EIO): the next
    progress line would raise before the stop request's checkpoint is saved. One still open (`kill -HUP` from another
    shell) keeps its output."""
    for fd in terminals:
        if not _is_terminal(fd):  # a hung-up terminal answers no terminal request
            null = os.open(os.devnull, os.O_WRONLY)
            os.dup2(null, fd)
            os.close(null)


@contextlib.contextmanager
def _handled_by(handler):
    """handler on the stop signals this process was not started ignoring, for the block: a signal ignored at start
    (a shell's background job ignores Ctrl-C) stays ignored throughout, as Python itself leaves it."""
    terminals = _terminals()

    def on_signal(signum, frame):
        if signum == getattr(signal, "SIGHUP", None):
            _leave_hung_up(terminals)
        handler(signum, frame)

    before = {s: signal.signal(s, on_signal) for s in STOP_SIGNALS if signal.getsignal(s) != signal.SIG_IGN}
    try:
        yield
    finally:
        for sig, previous in before.items():
            signal.signal(sig, previous)


@dataclass
class StopFlag:
    """Set from a signal handler; the loop checks it between steps so a step is never cut in half."""

    requested: bool = False
    signum: int = 0  # the signal that asked (SIGINT, SIGTERM or SIGHUP), for the exit status 128 + signum


@contextlib.contextmanager
def stop_handlers(stop: StopFlag):
    """While the block runs, the first stop signal sets `stop` (the loop finishes its step, saves, exits); a second
    Ctrl-C stops at once."""

    def handler(signum, frame):
        if stop.requested and signum == signal.SIGINT:
            raise KeyboardInterrupt
        stop.requested, stop.signum = True, stop.signum or signum

    with _handled_by(handler):
        yield stop


@contextlib.contextmanager
def raise_on_stop(message: str):
    """While the block runs (in the main thread; elsewhere signals cannot be caught), a stop signal raises
    Interrupted(message): work with nothing worth saving stops at once and its `finally` blocks clean up."""
    import threading

    from rotnet.errors import Interrupted

    def handler(signum, frame):
        raise Interrupted(message, signum, saved=False)

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    with _handled_by(handler):
        yield


@contextlib.contextmanager
def signals_held():
    """Hold the stop signals while the block runs, then deliver the first one that came; a second Ctrl-C ends
    the process at once (nothing is written yet). Raised inside torch's start-up, where its C++ code calls Python,
    a KeyboardInterrupt aborts the process with a C++ message instead of unwinding to main's one line."""
    held: list[int] = []

    def hold(signum, frame):
        if held and signum == signal.SIGINT:  # os.write, not print: the handler may cut into another write
            os.write(2, b"rotnet: stopped at once, before anything was written\n")
            os._exit(130)
        held.append(signum)

    with _handled_by(hold):
        yield
    if held:
        signal.raise_signal(held[0])  # as if it came now: a KeyboardInterrupt, or the signal's own handler
