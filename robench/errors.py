"""The one exception type for a user's mistake.

The library raises `UserError` for anything the user can fix (a bad flag, a missing file, a
config key that does not exist); the CLI turns it into one line on stderr and exit code 2.
Everything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class UserError(Exception):
    """A mistake in the user's input, explained in one sentence that names the value."""


class ModelChanged(UserError):
    """The evaluated model changed while robench measured it (a buffer, a parameter or its
    `requires_grad`, a module's mode, the hooks registered): the numbers would then be of no
    one model, so they are not used. `changes` names each change, in words."""

    SHOWN = 3  # changes named in the sentence; the rest are counted

    def __init__(self, changes: list[str], *, wrote_nothing: bool = False):
        self.changes = list(changes)
        named = "; ".join(self.changes[:self.SHOWN])
        if len(self.changes) > self.SHOWN:
            named += f" (and {len(self.changes) - self.SHOWN} more)"
        tail = "robench wrote nothing" if wrote_nothing else "its result is not used"
        super().__init__(f"the model changed during the evaluation: {named}; {tail}.")

    def written_nothing(self) -> ModelChanged:
        """The same refusal, said by a command that has removed what it wrote."""
        return ModelChanged(self.changes, wrote_nothing=True)


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
