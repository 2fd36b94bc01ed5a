"""A JSON-lines metrics file as an Accelerate tracker, beside TensorBoard."""

from __future__ import annotations

import json
import time
from pathlib import Path

from accelerate.tracking import GeneralTracker


class JsonlTracker(GeneralTracker):
    """Appends one JSON object per `log` call to ``<logging_dir>/metrics.jsonl``.

    Built before the `Accelerator` (it is passed in ``log_with``), so construction touches no
    process state; `Accelerator.init_trackers` and `Accelerator.log` call it on the main process
    only.
    """

    name = "jsonl"
    requires_logging_directory = True

    def __init__(self, run_name: str, logging_dir: str | Path) -> None:
        super().__init__()
        self.run_name = run_name
        self.path = Path(logging_dir) / "metrics.jsonl"

    @property
    def tracker(self):
        return self.path

    def _append(self, path: Path, record: dict) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a") as f:
            f.write(json.dumps(record, default=float) + "\n")

    def store_init_configuration(self, values: dict) -> None:
        self._append(self.path.with_name("config.jsonl"), {"run": self.run_name, **values})

    def log(self, values: dict, step: int | None = None, **kwargs) -> None:
        self._append(self.path, {"step": step, "time": round(time.time(), 3), **values})
