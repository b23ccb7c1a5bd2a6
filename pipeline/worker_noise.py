"""The driver's stderr, less the noise of a trial process that Ray stops as asked.

Ray stops a trial's process with SIGTERM (ASHA's stop, Ctrl-C, the end of a sweep) and its handler
raises SystemExit wherever Python is. When that lands inside a callback (a weakref's, during garbage
collection), Python prints "Exception ignored in ...", a traceback and "SystemExit: 1", and Ray
forwards those lines to the driver's console prefixed with the trial's pid. The trial code hides them
itself once it runs (`pipeline.trial.quiet_when_stopped`), but a process stopped while it is still
importing has no such hook yet, so the driver drops exactly these blocks too: every other line, and
any such block ending in another exception, passes through unchanged.
"""
from __future__ import annotations

import contextlib
import re
import sys
import threading
from typing import Iterator, TextIO

# "\x1b[36m(single_worker_trial pid=8790)\x1b[0m message" (colours optional; ip=... when remote)
_WORKER_LINE = re.compile(r"^(?:\x1b\[[0-9;]*m)?\((?P<who>[^()]*pid=[^()]*)\)(?:\x1b\[[0-9;]*m)? ?(?P<msg>.*)$", re.S)
MAX_HELD = 60  # lines of one block held back at most (a longer one is not this noise: let it out)


class WithoutStoppedTrialNoise:
    """A text stream that forwards to `stream`, line by line, minus stopped trials' unraisable SystemExit."""

    def __init__(self, stream: TextIO):
        self.stream = stream
        self._partial = ""
        self._held: dict[str, list[str]] = {}  # worker -> the lines of its open "Exception ignored" block
        self._lock = threading.Lock()  # Ray prints workers' lines from its own thread

    def write(self, text: str) -> int:
        with self._lock:
            self._partial += text
            *lines, self._partial = self._partial.split("\n")
            for line in lines:
                self._line(line + "\n")
        return len(text)

    def _line(self, line: str) -> None:
        match = _WORKER_LINE.match(line.rstrip("\n"))
        if match is None:
            self.stream.write(line)
            return
        who, message = match["who"], match["msg"]
        held = self._held.get(who)
        if held is None:
            if message.startswith("Exception ignored in"):
                self._held[who] = [line]
            else:
                self.stream.write(line)
            return
        held.append(line)
        if message.startswith("SystemExit"):
            del self._held[who]  # the whole block was the stop's noise
        elif (message and not message[0].isspace() and not message.startswith("Traceback")) or len(held) > MAX_HELD:
            self.stream.write("".join(self._held.pop(who)))  # another exception: the user should see it

    def flush(self) -> None:
        self.stream.flush()

    def close_blocks(self) -> None:
        """Let out whatever is still held (a block cut off when the driver ends)."""
        with self._lock:
            for who in list(self._held):
                self.stream.write("".join(self._held.pop(who)))
            if self._partial:
                self.stream.write(self._partial)
                self._partial = ""

    def __getattr__(self, name: str):  # fileno, isatty, encoding, ...: the real stream's
        return getattr(self.stream, name)


@contextlib.contextmanager
def stopped_trials_quiet() -> Iterator[WithoutStoppedTrialNoise]:
    """sys.stderr filtered while the sweep runs (Ray looks sys.stderr up for every batch it prints)."""
    original = sys.stderr
    sys.stderr = filtered = WithoutStoppedTrialNoise(original)
    try:
        yield filtered
    finally:
        filtered.close_blocks()
        sys.stderr = original
