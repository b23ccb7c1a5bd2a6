"""Ctrl-C (SIGINT) and a preemption notice (SIGTERM) stop a sweep cleanly; a second one stops it at once.

The first signal is handled according to what the driver is doing:
- before Tune runs (checks, Ray starting): `Interrupted` is raised, which unwinds through every
  `finally` (Ray shut down, the sweep's lock released);
- while Tune runs: Tune is asked to stop (through the handler Tune itself installs for SIGUSR1, its
  documented way to end a run from outside), so the running trials are stopped and the driver goes on
  to write the tables and the report;
- after Tune: nothing is cut short, the tables being written are finished.
The driver then exits 128 + the signal's number (130, 143). A second signal exits at once, after
killing what this driver started (the Ray it began); the tables on disk are the last complete ones,
since they are only ever replaced whole.

A preemption may signal every process at once, Ray's own included; the driver would then wait a
minute for a GCS that is gone. So once signalled, Ray has `DEADLINE_S` to stop; past that the tables
are written from the run store alone (which needs no Ray) and the driver exits with the same code.

Ray installs two SIGTERM handlers of its own in `ray.init`: a Python one (exit) and a C++ crash
handler (a stack dump, then abort). The driver keeps the C++ one out of its own process (Ray reads
RAY_DISABLE_FAILURE_SIGNAL_HANDLER once, at import; the processes Ray starts keep theirs) and
installs the handlers here again once Ray has started (`reinstall`).
"""
from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import threading
from typing import Callable, Iterator

SIGNALS = (signal.SIGINT, signal.SIGTERM)
DEADLINE_S = 20.0
RESUME_HINT = "interrupted: run the same command to resume"


FAILURE_HANDLER_ENV = "RAY_DISABLE_FAILURE_SIGNAL_HANDLER"


@contextlib.contextmanager
def ray_imported_without_crash_handler() -> Iterator[None]:
    """`import ray` inside this block reads the setting that keeps Ray's C++ SIGTERM handler out of
    this process; it is taken off the environment afterwards, so the processes Ray starts keep it."""
    ours = FAILURE_HANDLER_ENV not in os.environ
    if ours:
        os.environ[FAILURE_HANDLER_ENV] = "1"
    try:
        yield
    finally:
        if ours:
            os.environ.pop(FAILURE_HANDLER_ENV, None)


def exit_on_signals_until_ready() -> None:
    """While a command's imports load (seconds: torch, Ray) nothing has started or been written, so a
    signal then just exits, with the hint and the usual code, instead of a KeyboardInterrupt traceback."""
    def leave(signum, frame):
        print(f"\n{RESUME_HINT}", file=sys.stderr, flush=True)
        os._exit(128 + signum)
    for sig in SIGNALS:
        signal.signal(sig, leave)


class Interrupted(BaseException):
    """Raised by the first signal while nothing can be asked to stop gracefully. A BaseException, like
    KeyboardInterrupt, so `except Exception` blocks never swallow it."""


def _kill_descendants() -> None:
    """Kill every process this one started (the local Ray it began, its workers): a second Ctrl-C
    must not leave them running. Only our own descendants: never another Ray on the machine."""
    import psutil
    children = psutil.Process().children(recursive=True)
    for child in children:
        with contextlib.suppress(psutil.Error):
            child.kill()
    psutil.wait_procs(children, timeout=5)  # dead, so their run leases are released


class Interrupts:
    def __init__(self) -> None:
        self.signum: int | None = None
        self._mode = "raise"
        self._deferred = False
        self._watchdog: threading.Timer | None = None
        self.write_tables: Callable[[], None] | None = None  # the fallback when Ray does not stop

    @property
    def received(self) -> bool:
        return self.signum is not None

    @property
    def exit_code(self) -> int:
        return 128 + (self.signum or signal.SIGINT)

    def _handle(self, signum: int, frame) -> None:
        if self.signum is not None:
            print(f"\n{signal.Signals(signum).name} again: stopping at once; the tables written last are "
                  f"intact\n{RESUME_HINT}", file=sys.stderr, flush=True)
            _kill_descendants()
            os._exit(128 + signum)
        self.note(signum)
        if self._mode == "raise":
            raise Interrupted
        if self._mode == "tune":
            self._deferred = not self._ask_tune_to_stop()
            # Tune's handler puts back the SIGINT handler it found (ours, as it installs none)
            signal.signal(signal.SIGINT, self._handle)

    def note(self, signum: int) -> None:
        """The first signal: say so, and give Ray `DEADLINE_S` to stop."""
        self.signum = signum
        print(f"\n{signal.Signals(signum).name} received: stopping the sweep, then writing its tables (Ctrl-C "
              "again to stop at once)", file=sys.stderr, flush=True)
        self._watchdog = threading.Timer(DEADLINE_S, self._give_up)
        self._watchdog.daemon = True
        self._watchdog.start()

    def _give_up(self) -> None:
        print(f"Ray did not stop within {DEADLINE_S:.0f} s of the signal (it may have been signalled too); "
              "writing the tables from the run store", file=sys.stderr, flush=True)
        _kill_descendants()  # first: no trial of ours may commit an epoch after the tables are written
        if self.write_tables is not None:
            try:
                self.write_tables()
            except Exception as exc:  # noqa: BLE001 - exiting anyway; the tables before stay readable
                print(f"tables not written ({type(exc).__name__}: {exc}); the last ones stay readable",
                      file=sys.stderr, flush=True)
        print(RESUME_HINT, file=sys.stderr, flush=True)
        os._exit(self.exit_code)

    def settled(self) -> None:
        """Ray has stopped: no deadline any more, and a first signal now only marks the sweep interrupted."""
        if self._watchdog is not None:
            self._watchdog.cancel()
        self._mode = "finish"

    def install(self) -> None:
        for sig in SIGNALS:
            signal.signal(sig, self._handle)

    reinstall = install

    @contextlib.contextmanager
    def installed(self) -> Iterator["Interrupts"]:
        """Handlers on for the sweep, the ones before put back after (in-process callers, tests)."""
        before = {sig: signal.getsignal(sig) for sig in SIGNALS}
        self.install()
        try:
            yield self
        finally:
            if self._watchdog is not None:
                self._watchdog.cancel()
            for sig, handler in before.items():
                signal.signal(sig, handler)

    def finishing(self) -> None:
        """From now on the first signal only marks the sweep interrupted: what remains is writing tables."""
        self._mode = "finish"

    @staticmethod
    def _ask_tune_to_stop() -> bool:
        handler = signal.getsignal(signal.SIGUSR1)
        if not callable(handler):  # Tune is not listening yet
            return False
        handler(signal.SIGUSR1, None)
        return True

    def deliver_to_tune(self) -> None:
        """Called from inside Tune's loop (a callback): delivers a stop that came before Tune listened."""
        if self._mode == "tune" and self._deferred and self._ask_tune_to_stop():
            self._deferred = False
            signal.signal(signal.SIGINT, self._handle)

    @contextlib.contextmanager
    def forwarded_to_tune(self) -> Iterator[None]:
        """While Tune's fit runs: the first signal asks Tune to stop."""
        # Tune would replace our SIGINT handler with its own, which ignores SIGTERM and prints advice
        # about Tuner.restore (we never restore Tune); it still listens on SIGUSR1.
        os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = "1"
        quiet = _QuietTune()
        tune_logger = logging.getLogger("ray.tune.tune")
        tune_logger.addFilter(quiet)
        self._mode = "tune"
        self._deferred = self.received  # a signal before this point: Tune stops at its first step
        try:
            yield
        finally:
            self._mode = "finish"
            tune_logger.removeFilter(quiet)


class _QuietTune(logging.Filter):
    """Tune's own messages about an interrupted run: the driver prints its own, and resumes by rerunning
    the same command, never through Tuner.restore."""
    HIDDEN = ("Stop signal received", "Tuner.restore", "Experiment has been interrupted")

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not any(text in message for text in self.HIDDEN)
