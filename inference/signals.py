"""Running cleanup code when the process is asked to stop (SIGTERM), as on Ctrl-C."""

from __future__ import annotations

import contextlib
import signal

__all__ = ["on_sigterm"]


@contextlib.contextmanager
def on_sigterm(handler):
    """Call ``handler(signum, frame)`` on SIGTERM inside the block, restoring the previous handler after it.

    Outside the main thread no handler can be installed; the block then runs unprotected, and its own ``finally``
    clauses remain the cleanup.
    """
    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread
        previous = None
    try:
        yield
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
