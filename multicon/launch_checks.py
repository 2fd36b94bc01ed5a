"""Checks that the processes training are the ones the launcher started.

`torchrun` and `accelerate launch` tell each process the world size in ``WORLD_SIZE`` (MPI
launchers in ``PMI_SIZE`` / ``OMPI_COMM_WORLD_SIZE``). If Accelerate's state in a process was
made before the trainer's with other settings (a `PartialState()` without ``cpu=True`` under
``ACCELERATE_USE_CPU=true``, a pattern of Accelerate's own docs), every rank runs as process 0
of 1 and they all write the same checkpoint files: that is refused at once.
"""

from __future__ import annotations

import os
import warnings

_WORLD_SIZE_VARS = ("WORLD_SIZE", "PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE")


def launched_world_size() -> int | None:
    """The number of processes the launcher says it started, or None when it says nothing.

    Example:
        >>> import os
        >>> os.environ.get("WORLD_SIZE") is None or launched_world_size() > 0
        True
    """
    for name in _WORLD_SIZE_VARS:
        value = os.environ.get(name)
        if value:
            try:
                return int(value)
            except ValueError:
                raise ValueError(f"{name}={value!r} is not a number of processes") from None
    return None


def check_world_size(num_processes: int, process_index: int) -> None:
    """Raise `RuntimeError` when the Accelerator's processes are not the launcher's; warn when
    `accelerate launch` prepared several processes but started one.

    Example:
        >>> check_world_size(1, 0)  # a plain `python script.py`
    """
    launched = launched_world_size()
    if launched is not None and launched != num_processes:
        raise RuntimeError(
            f"the launcher started {launched} processes (WORLD_SIZE={launched}), but "
            f"Accelerate's state in this one counts {num_processes} (this is process "
            f"{process_index}): it was made before the Trainer with other settings, such as a "
            "`PartialState()` without cpu=True under ACCELERATE_USE_CPU=true. Every rank would "
            "then train as process 0 and write the same checkpoint files. Make it as the Trainer "
            "does, `PartialState(cpu=accelerate.utils.parse_flag_from_env('ACCELERATE_USE_CPU'))`,"
            " or make none before the Trainer."
        )
    by_accelerate = "ACCELERATE_DYNAMO_BACKEND" in os.environ  # set by `accelerate launch`
    if launched is None and num_processes == 1 and by_accelerate and "MASTER_ADDR" in os.environ:
        warnings.warn(
            "accelerate launch set up several processes (MASTER_ADDR is set) but started only "
            "this one: it does so with --cpu, or with fewer than two GPUs and no --multi_gpu. For "
            "N CPU processes: ACCELERATE_USE_CPU=true accelerate launch --multi_gpu "
            "--num_processes N ...",
            stacklevel=3,
        )
