"""Messages as one bounded line, cut between words (a reason is never cut mid-word)."""
from __future__ import annotations

MAX_LINE = 1000


def bounded(text: str, limit: int = MAX_LINE) -> str:
    """`text` on one line, at most `limit` characters: whitespace collapsed; if too long, cut at the
    last space that leaves room for " ..." (mid-word only for a single word longer than the limit)."""
    line = " ".join(str(text).split())
    if len(line) <= limit:
        return line
    room = limit - 4
    cut = line.rfind(" ", 0, room + 1)
    return (line[:cut] if cut > 0 else line[:room]) + " ..."


def one_line(exc: BaseException) -> str:
    return bounded(str(exc))
