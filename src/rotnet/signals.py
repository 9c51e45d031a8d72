"""What Ctrl-C and SIGTERM do while rotnet works, always undone after (torch-free: the command line holds them
while torch loads). Outside these blocks the caller's handlers apply, so a notebook's Ctrl-C interrupts as usual."""

from __future__ import annotations

import contextlib
import os
import signal
from dataclasses import dataclass

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


@contextlib.contextmanager
def _handled_by(handler):
    """handler on the stop signals this process was not started ignoring, for the block: a signal ignored at start
    (a shell's background job ignores Ctrl-C) stays ignored throughout, as Python itself leaves it."""
    before = {s: signal.signal(s, handler) for s in STOP_SIGNALS if signal.getsignal(s) != signal.SIG_IGN}
    try:
        yield
    finally:
        for sig, previous in before.items():
            signal.signal(sig, previous)


@dataclass
class StopFlag:
    """Set from a signal handler; the loop checks it between steps so a step is never cut in half."""

    requested: bool = False
    signum: int = 0  # the signal that asked (SIGINT or SIGTERM), for the exit status 128 + signum


@contextlib.contextmanager
def stop_handlers(stop: StopFlag):
    """While the block runs, the first Ctrl-C / SIGTERM sets `stop` (the loop finishes its step, saves, exits); a
    second Ctrl-C stops at once."""

    def handler(signum, frame):
        if stop.requested and signum == signal.SIGINT:
            raise KeyboardInterrupt
        stop.requested, stop.signum = True, stop.signum or signum

    with _handled_by(handler):
        yield stop


@contextlib.contextmanager
def raise_on_stop(message: str):
    """While the block runs (in the main thread; elsewhere signals cannot be caught), Ctrl-C or SIGTERM raises
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
    """Hold Ctrl-C and SIGTERM while the block runs, then deliver the first one that came; a second Ctrl-C ends
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
        signal.raise_signal(held[0])  # as if it came now: a KeyboardInterrupt, or SIGTERM's own handler
