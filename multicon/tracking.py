"""A JSON-lines metrics file as an Accelerate tracker, beside TensorBoard."""

from __future__ import annotations

import json
import time
from pathlib import Path

from accelerate.tracking import GeneralTracker, on_main_process


class JsonlTracker(GeneralTracker):
    """Appends one JSON object per `log` call to ``<logging_dir>/metrics.jsonl``."""

    name = "jsonl"
    requires_logging_directory = True

    @on_main_process
    def __init__(self, run_name: str, logging_dir: str | Path) -> None:
        super().__init__()
        self.run_name = run_name
        self.path = Path(logging_dir) / "metrics.jsonl"
        self.path.parent.mkdir(parents=True, exist_ok=True)

    @property
    def tracker(self):
        return self.path

    @on_main_process
    def store_init_configuration(self, values: dict) -> None:
        with open(self.path.with_name("config.jsonl"), "a") as f:
            f.write(json.dumps({"run": self.run_name, **values}, default=str) + "\n")

    @on_main_process
    def log(self, values: dict, step: int | None = None, **kwargs) -> None:
        record = {"step": step, "time": round(time.time(), 3), **values}
        with open(self.path, "a") as f:
            f.write(json.dumps(record, default=float) + "\n")
