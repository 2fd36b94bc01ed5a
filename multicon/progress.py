"""Progress bars for the long waits around training: decoding images, building a vocabulary,
converting a corpus to token ids, extracting features for kNN, probes, zero-shot and retrieval.

A bar is drawn (tqdm, on stderr) only when asked (recipes pass ``--progress_bar``) and only on
the main process of each machine, so ``accelerate launch`` shows one bar, not one per GPU.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from typing import Any


def is_local_main_process() -> bool:
    """True unless a launcher (torchrun, accelerate) started this process as a non-zero local
    rank; read from the environment, so it needs no initialised process group."""
    return int(os.environ.get("LOCAL_RANK", "0")) == 0


class _NoBar:
    """A bar that draws nothing: iterates its iterable, ignores updates."""

    def __init__(self, iterable: Iterable | None) -> None:
        self.iterable = iterable

    def __iter__(self) -> Iterator:
        return iter(self.iterable if self.iterable is not None else ())

    def update(self, n: int = 1) -> None:
        pass

    def set_postfix(self, *args: Any, **kwargs: Any) -> None:
        pass

    def close(self) -> None:
        pass

    def __enter__(self) -> _NoBar:
        return self

    def __exit__(self, *exc: object) -> None:
        pass


def progress(
    iterable: Iterable | None = None,
    *,
    enabled: bool = True,
    total: int | None = None,
    desc: str = "",
    unit: str = "it",
):
    """A tqdm bar over ``iterable`` (or, without one, a bar to ``update`` by hand), or an object
    with the same methods that draws nothing when ``enabled`` is false or this process is not
    its machine's main process. Bars are removed when done (``leave=False``): the run's own
    output stays readable.

    Example:
        >>> sum(progress(range(4), enabled=False, desc="counting"))
        6
        >>> with progress(enabled=False, total=3, unit="img") as bar:
        ...     bar.update(3)
    """
    if not (enabled and is_local_main_process()):
        return _NoBar(iterable)
    from tqdm.auto import tqdm

    return tqdm(iterable, total=total, desc=desc, unit=unit, dynamic_ncols=True, leave=False)
