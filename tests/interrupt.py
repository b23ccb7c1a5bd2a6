"""Interrupting a real training from its epoch callback, and reading its rows back without timings."""
from __future__ import annotations

import json
from pathlib import Path


class Stop(Exception):
    """Raised from an epoch callback: the run stops there, as a killed process would after a checkpoint."""


def stop_after(epoch: int):
    def callback(metrics, checkpoint):
        if metrics["epoch"] == epoch:
            raise Stop
    return callback


def untimed(run_dir: Path) -> list[dict]:
    """metrics.jsonl without `seconds`, so an interrupted run can be compared with a straight one."""
    return [{k: v for k, v in json.loads(line).items() if k != "seconds"}
            for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
