"""A background beat for leases on object stores (which have no locks): `beat()` every `every_s`
seconds until the block ends. A failed beat is skipped; the next one retries."""
from __future__ import annotations

import contextlib
import threading
from typing import Callable, Iterator


@contextlib.contextmanager
def heartbeat(beat: Callable[[], None], every_s: float, name: str) -> Iterator[None]:
    stop = threading.Event()

    def loop() -> None:
        while not stop.wait(every_s):
            with contextlib.suppress(Exception):  # a missed beat is retried; a lease outlives a few
                beat()
    thread = threading.Thread(target=loop, name=name, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
