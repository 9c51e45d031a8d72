"""The one exception type whose message is shown to the user as a single line (no traceback)."""


class RotnetError(Exception):
    """A problem with the user's input or environment, explained in one line."""
