"""Failures a run reports in one line (the command lines catch these). No imports: the bottom of
the import graph, so every module can raise them."""


class ConfigError(ValueError):
    """A user-facing configuration or input error (one line, no traceback needed)."""


class DivergedError(RuntimeError):
    """The loss became NaN or infinite; the run stopped before checkpointing the broken state."""


class CheckpointError(RuntimeError):
    """Checkpoint files exist in a run folder but none of them can be used."""
