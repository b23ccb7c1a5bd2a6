"""What every command line here shares: one-line errors with exit code 2 instead of tracebacks."""
from __future__ import annotations

import os
import sys
from typing import Callable

from hiddennets.errors import CheckpointError, ConfigError, DivergedError
from pipeline.interrupts import RESUME_HINT
from pipeline.storage import StorageError, storage_failure
from pipeline.text import MAX_LINE, one_line

EXIT_BAD_INPUT = 2


MAX_ERROR_LINE = MAX_LINE


def run_main(main: Callable[[list[str]], int], argv: list[str] | None = None) -> int:
    try:
        return main(sys.argv[1:] if argv is None else argv)
    except ConfigError as exc:
        print(f"error: {one_line(exc)}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except (DivergedError, CheckpointError, StorageError) as exc:
        print(f"error: {one_line(exc)}", file=sys.stderr)
        return 1
    except BrokenPipeError:
        # the reader went away (e.g. `| head`): stop quietly, as Unix tools do
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except OSError as exc:
        problem = storage_failure(exc)
        if problem is None:
            raise
        print(f"error: storage failed ({problem}); what was written before is intact; make room or make it "
              "writable, then run the same command to resume", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(RESUME_HINT, file=sys.stderr)
        return 130
