"""rotnet's exceptions (torch-free, so the command line can name them without importing torch)."""

import signal
import warnings


class RotnetError(Exception):
    """A problem with the user's input or environment, explained in one line."""


class InUse(RotnetError):
    """The run folder is locked by another rotnet process: not a failure of the run, which that process owns."""


class Diverged(RuntimeError):
    """Training broke the model: its final weights are unusable (rotnet.health); the run is marked failed."""


class NonFiniteLoss(Diverged):
    """The loss became nan or inf; the run stops with its last good checkpoint kept."""

    def __init__(self, epoch: int, step: int):
        super().__init__(f"non-finite loss at epoch {epoch + 1}, step {step + 1}")
        self.epoch, self.step = epoch, step


class Interrupted(RuntimeError):
    """Work stopped on request (Ctrl-C, SIGTERM): training after saving a checkpoint (`saved`), or work with
    nothing to save (preparing a cache) at once."""

    def __init__(self, message: str, signum: int = signal.SIGINT, saved: bool = True):
        super().__init__(message)
        self.signum, self.saved = signum or signal.SIGINT, saved


def unknown(what: str, name: object, choices) -> RotnetError:
    """'unknown experiment 'rotaton'; did you mean rotation? choose one of ...'."""
    import difflib

    choices = list(choices)
    close = difflib.get_close_matches(str(name), choices, n=1)
    hint = f"did you mean {close[0]}? " if close else ""
    return RotnetError(f"unknown {what} {name!r}; {hint}choose one of {', '.join(map(str, choices))}")


_SAID: set = set()  # the keys of the warnings this process has given


def warn_once(key, message: str, stacklevel: int = 2) -> None:
    """warnings.warn, once per process for each key: what a plan would otherwise repeat before every run (the runs
    record it anyway)."""
    if key not in _SAID:
        _SAID.add(key)
        warnings.warn(message, stacklevel=stacklevel + 1)
