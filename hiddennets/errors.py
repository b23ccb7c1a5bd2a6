"""Failures a run reports in one line (the command lines catch these; no torch import here)."""


class DivergedError(RuntimeError):
    """The loss became NaN or infinite; the run stopped before checkpointing the broken state."""


class CheckpointError(RuntimeError):
    """Checkpoint files exist in a run folder but none of them can be used."""
