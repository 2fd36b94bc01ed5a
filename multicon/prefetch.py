"""Run an iterator ahead in a background thread, so that making the next item overlaps using
this one.

Torch's tensor ops and ctypes calls release the GIL: a CPU pair generator's ops (`ContextPairs`)
run while the step's C kernel trains on the batch before, instead of after it.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from typing import TypeVar

T = TypeVar("T")

_END = object()


def prefetch(items: Iterator[T], depth: int = 1) -> Iterator[T]:
    """Yield ``items`` in order, made by a background thread that runs ``depth`` items ahead.

    An exception raised while making an item is raised here, at that item. Closing the returned
    generator (or dropping it) stops the thread once the item in progress is made.

    Only for iterators whose items do not depend on what the consumer does meanwhile: nothing
    drawn from torch's global random generator (which the training step draws from too), no
    shared state the step changes.

    Example:
        >>> list(prefetch(iter(range(5))))
        [0, 1, 2, 3, 4]
    """
    if depth < 1:
        raise ValueError(f"depth must be >= 1, got {depth}")
    ready: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(entry: tuple[bool, object]) -> bool:
        while not stop.is_set():
            try:
                ready.put(entry, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def work() -> None:
        try:
            for item in items:
                if not put((True, item)):
                    return
            put((True, _END))
        except BaseException as e:  # noqa: BLE001 - handed to the consumer, raised there
            put((False, e))

    thread = threading.Thread(target=work, name="multicon-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            ok, item = ready.get()
            if not ok:
                raise item  # type: ignore[misc]
            if item is _END:
                return
            yield item  # type: ignore[misc]
    finally:
        stop.set()
        thread.join()
