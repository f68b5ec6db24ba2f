"""The one exception type for a user's mistake.

The library raises `UserError` for anything the user can fix (a bad flag, a missing file, a
config key that does not exist); the CLI turns it into one line on stderr and exit code 2.
Everything else is a bug and keeps its traceback.
"""


class UserError(Exception):
    """A mistake in the user's input, explained in one sentence that names the value."""


class Interrupted(KeyboardInterrupt):
    """Work stopped by the user (Ctrl-C); says how to continue it."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class Preempted(Interrupted):
    """Work stopped at a safe point because a scheduler sent `signum` (robench.preemption)."""

    def __init__(self, message: str, signum: int):
        super().__init__(message)
        self.signum = signum


class RobenchWarning(UserWarning):
    """Something the user should know that does not stop the work (the CLI prints it as one
    `warning:` line): a setting that is valid but costly here, say."""
