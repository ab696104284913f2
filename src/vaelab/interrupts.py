"""SIGTERM and SIGINT (Ctrl-C) in every command: the command stops, says what it was doing, leaves
a record (failed.json marked interrupted, through run_dir.Attempt) and exits with 128 + the
signal's number: 143 for SIGTERM, 130 for SIGINT, never 0 or a traceback.

While Lightning trains (`graceful()` around trainer.fit, once Lightning has put its own handler
in front of vaelab's), the first signal only asks Lightning to stop after the current batch, so
that InterruptCheckpoint saves a state to continue from; a second signal stops at once.
Everywhere else (loading data, building caches, drawing figures, testing, vaelab-eval) the
signal stops the command at once: Python runs the handler between two bytecodes of the main
thread, so no loop has to poll for it.
"""

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

SIGNALS = (signal.SIGTERM, signal.SIGINT)

_received: int | None = None
#: what the command is doing, for the message of an interruption
_activity = "starting"
_graceful = False
_forwarding = False


class Interrupted(SystemExit):
    """A command stopped by a signal; exits with status 128 + the signal's number, which shells
    and schedulers read as "terminated"."""

    def __init__(self, signum: int, message: str | None = None):
        super().__init__(128 + signum)
        self.signum = signum
        self.message = message or f"{signal_name(signum)} while {_activity}"

    def __str__(self) -> str:
        return self.message


def signal_name(signum: int) -> str:
    return "SIGINT (Ctrl-C)" if signum == signal.SIGINT else signal.Signals(signum).name


@contextmanager
def handled() -> Iterator[None]:
    """SIGTERM and SIGINT raise Interrupted inside the block (in the main thread, the only one
    Python lets handle signals); the previous handlers come back after it."""
    global _received, _activity
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {signum: signal.getsignal(signum) for signum in SIGNALS}
    saved = _received, _activity
    _received, _activity = None, "starting"
    for signum in SIGNALS:
        signal.signal(signum, _handle)
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, signal.SIG_DFL if handler is None else handler)
        _received, _activity = saved


def received() -> int | None:
    """The first signal received inside `handled()`, if any."""
    return _received


@contextmanager
def during(activity: str) -> Iterator[None]:
    """Name what the command does inside the block ("testing ...") for an interruption's
    message."""
    global _activity
    before, _activity = _activity, activity
    try:
        yield
    finally:
        _activity = before


@contextmanager
def graceful() -> Iterator[None]:
    """Inside the block (trainer.fit), a first signal lets Lightning stop after its current
    batch instead of stopping at once."""
    global _graceful
    before, _graceful = _graceful, True
    try:
        yield
    finally:
        _graceful = before


def check() -> None:
    """Raise Interrupted if a signal arrived that nothing acted on yet (e.g. during the last
    batch of training, after which Lightning finishes normally)."""
    if _received is not None:
        raise Interrupted(_received)


def _lightning_handler():
    """Lightning's SIGTERM handler while it trains or tests (it calls vaelab's after its own)."""
    handler = signal.getsignal(signal.SIGTERM)
    return handler if callable(handler) and handler is not _handle else None


def _handle(signum: int, frame) -> None:
    global _received, _forwarding
    if _forwarding:  # vaelab's handler, called by Lightning's for the SIGTERM forwarded below
        return
    first = _received is None
    if first:
        _received = signum
    lightning = _lightning_handler()
    if _graceful and first and lightning is not None:
        from vaelab.console import log

        log.warning(f"{signal_name(signum)}: stopping after the current batch and saving a "
                    "checkpoint (send it again to stop at once)")
        if signum != signal.SIGTERM:  # Lightning's loops only watch for SIGTERM
            _forwarding = True
            try:
                lightning(signal.SIGTERM, frame)
            finally:
                _forwarding = False
        return
    raise Interrupted(_received)
