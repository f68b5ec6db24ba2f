"""Stopping at a safe point when a scheduler asks, then passing its signal on.

Slurm sends SIGTERM before it preempts a job or ends it at its time limit (and SIGUSR1 or
SIGUSR2 a chosen time before, with `--signal`); submitit's handler of its own signal requeues
the job. A signal that ended a process in the middle of an optimiser step would leave the
last checkpoint as the only state, and the run marked `running`. So for the duration of a
training run or an evaluation robench takes these signals over: the step (or block of
points) under way finishes, the checkpoint (or state file) is written, the run is marked
`interrupted`, and then the signal is delivered again to whatever handled it before robench:
submitit requeues the job, and with no handler the process ends as the signal's default
says (exit status 128 + the signal's number). The requeued or restarted work resumes from
that checkpoint exactly.
"""

from __future__ import annotations

import os
import signal
import threading
from types import FrameType

SIGNALS = ("SIGTERM", "SIGUSR1", "SIGUSR2")


class StopRequests:
    """The signals above noted instead of acted on, inside the `with` block.

    Only the main thread may install handlers; elsewhere the block notes nothing.
    """

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, object] = {}

    def __enter__(self) -> StopRequests:
        if threading.current_thread() is threading.main_thread():
            for name in SIGNALS:
                sig = getattr(signal, name, None)
                if sig is not None:
                    self._previous[sig] = signal.signal(sig, self._note)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, previous in self._previous.items():
            signal.signal(sig, previous)
        self._previous.clear()

    def _note(self, signum: int, frame: FrameType | None) -> None:
        if self.signum is None:
            self.signum = signum

    @property
    def requested(self) -> bool:
        return self.signum is not None

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name if self.signum is not None else ""


def pass_on(signum: int) -> None:
    """Deliver `signum` to this process again, to the handler robench had replaced (call it
    after the `StopRequests` block has ended)."""
    os.kill(os.getpid(), signum)
