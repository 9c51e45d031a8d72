"""rotnet's exceptions (torch-free, so the command line can name them without importing torch)."""

import signal


class RotnetError(Exception):
    """A problem with the user's input or environment, explained in one line."""


class InUse(RotnetError):
    """The run folder is locked by another rotnet process: not a failure of the run, which that process owns."""


class NonFiniteLoss(RuntimeError):
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
