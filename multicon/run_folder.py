"""Claiming a run's output folder: which run owns it, what a new run may do there, and a lock.

A run folder holds one run. ``run.json`` names it: a random run id, the `TrainConfig` and the
facts of the model, pairs and launch that change what it learns. Every checkpoint carries a copy
of that record, and ``.lock`` is held by the main process while `Trainer.fit` runs.

* A fresh run (``resume=""``) refuses a folder that holds another run's work (checkpoints, a
  saved model, a summary) unless ``overwrite_output_dir`` is set, which removes that work first.
* ``resume`` continues a run: ``latest`` is the newest checkpoint carrying the folder's run id.
  The configuration saved with the checkpoint is compared with the new one. A difference that
  changes the run is refused, naming each, unless ``allow_config_change`` names it.
* Pruning (``keep_checkpoints``) only ever removes the run's own checkpoints.

Example:
    >>> import tempfile
    >>> from pathlib import Path
    >>> with tempfile.TemporaryDirectory() as d:
    ...     (Path(d) / "summary.json").write_text("{}")
    ...     try:
    ...         check_fresh(d)
    ...     except FileExistsError as e:
    ...         print("refused:", "summary.json" in str(e))
    2
    refused: True
"""

from __future__ import annotations

import dataclasses
import fcntl
import json
import os
import shutil
import socket
import time
import uuid
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from multicon import checkpoint

RUN_FILE = "run.json"
LOCK_FILE = ".lock"
# How long another machine looks for the main process's run.json: a network filesystem may show
# a new file to other clients late (attribute caches).
SHARED_WAIT_S = 10.0
# A run's work: a fresh run refuses a folder holding any of these.
WORK = ("checkpoints", "model", "summary.json", "report.json")
# What `overwrite_output_dir` removes: the work, the record, and the trackers' files ("multicon"
# is the TensorBoard tracker's folder, named after the trainer's project).
OUTPUTS = (*WORK, RUN_FILE, "metrics.jsonl", "config.jsonl", "multicon")

# `TrainConfig` fields that may differ on resume without changing what the run learns (epochs and
# max_steps set the length: the schedule is stretched or shortened to the new one).
HARMLESS = frozenset(
    {
        "output_dir",
        "resume",
        "overwrite_output_dir",
        "allow_config_change",
        "epochs",
        "max_steps",
        "log_every",
        "eval_every",
        "checkpoint_every",
        "keep_checkpoints",
        "num_workers",
        "log_with",
        "progress_bar",
    }
)


# Packages whose layers `describe` leaves to the architecture (their settings are shapes).
_LIBRARIES = ("torch", "torchvision", "transformers", "timm")


class FolderInUseError(RuntimeError):
    """Another live process holds the output folder's lock."""


# -- what a run is ---------------------------------------------------------------------------
def describe(model, pairs, optimizer, num_processes: int) -> dict[str, Any]:
    """The facts besides `TrainConfig` that change what a run learns, as flat JSON values.

    The model's parameter names and shapes (``model.architecture``), the class and the plain
    settings (numbers, strings, flags) of each of its modules that is not a stock layer (of
    torch, torchvision, transformers or timm), an InfoNCE temperature, the pair generator's
    class, size and settings, the optimizer's class and the number of processes.

    Example:
        >>> import torch
        >>> from multicon import ContrastiveModel, InfoNCE
        >>> model = ContrastiveModel(torch.nn.Linear(4, 2), loss=InfoNCE(0.2), symmetric=True)
        >>> facts = describe(model, [0] * 10, torch.optim.SGD(model.parameters(), lr=0.1), 1)
        >>> facts["model.symmetric"], round(facts["model.loss.temperature"], 6)
        (True, 0.2)
    """
    state = model.state_dict()
    values = sum(t.numel() for t in state.values())
    shapes = ";".join(f"{k}:{tuple(t.shape)}:{t.dtype}" for k, t in state.items())
    facts: dict[str, Any] = {
        "processes": num_processes,
        "optimizer.class": type(optimizer).__name__,
        "model.architecture": f"{len(state)} tensors, {values} values, {_digest(shapes)}",
    }
    for path, module in model.named_modules():
        if type(module).__module__.split(".")[0] in _LIBRARIES:
            continue  # stock layers: their sizes are in the architecture
        prefix = f"model.{path}." if path else "model."
        facts[prefix + "class"] = type(module).__name__
        facts.update({prefix + k: v for k, v in _settings(module).items()})
        if isinstance(getattr(type(module), "temperature", None), property):
            facts[prefix + "temperature"] = float(f"{module.temperature:.6g}")  # float32's noise
    size = pairs.num_pairs() if hasattr(pairs, "num_pairs") else len(pairs)
    facts.update({"pairs.class": type(pairs).__name__, "pairs.num_pairs": size})
    facts.update({"pairs." + k: v for k, v in _settings(pairs).items()})
    return json.loads(json.dumps(facts, default=str))


def _settings(obj) -> dict[str, Any]:
    """An object's public attributes that are plain values or dataclasses (view settings)."""
    out = {}
    for name, value in getattr(obj, "__dict__", {}).items():
        if name.startswith("_") or name == "training":
            continue
        if value is None or isinstance(value, bool | int | float | str):
            out[name] = value
        elif dataclasses.is_dataclass(value) and not isinstance(value, type):
            out[name] = dataclasses.asdict(value)
    return out


def _digest(text: str) -> str:
    import hashlib

    return "sha1 " + hashlib.sha1(text.encode()).hexdigest()[:12]


def _restored_from_weights(name: str) -> bool:
    """Facts no allowance can change on resume: the checkpoint's weights would undo them."""
    return name == "model.architecture" or (
        name.startswith("model.") and name.endswith((".temperature", ".class"))
    )


def _harmless(name: str) -> bool:
    return name in HARMLESS or name.endswith(".threads")  # CPU threads: speed, not the run


# -- the lock ----------------------------------------------------------------------------------
class FolderLock:
    """An exclusive ``flock`` on ``folder/.lock`` holding the holder's pid and host.

    The kernel drops the lock when its process dies, so a dead run's lock is taken over. On a
    network filesystem Linux maps ``flock`` to the server's byte-range locks (NFSv4 honours them).

    Example:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as d:
        ...     lock = FolderLock(d)
        ...     try:
        ...         FolderLock(d)  # a second claim, even from this process, is refused
        ...     except FolderInUseError:
        ...         print("in use")
        ...     lock.release()
        ...     FolderLock(d).release()
        in use
    """

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.path = self.folder / LOCK_FILE
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise FolderInUseError(_in_use_message(self.folder, self.path)) from None
        os.ftruncate(fd, 0)
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        os.write(fd, f"pid {os.getpid()} on {socket.gethostname()} since {stamp}\n".encode())
        self._fd: int | None = fd

    def release(self) -> None:
        """Unlock (for forked DataLoader workers too, which share the open file) and close."""
        if self._fd is None:
            return
        os.ftruncate(self._fd, 0)
        fcntl.flock(self._fd, fcntl.LOCK_UN)
        os.close(self._fd)
        self._fd = None


def _in_use_message(folder: Path, lock: Path) -> str:
    try:
        holder = lock.read_text().strip() or "a process that has not yet written its pid"
    except OSError:
        holder = "an unknown process"
    return (
        f"output_dir {folder} is in use by another run: {holder} holds {lock}. Wait for it to "
        "finish or stop it (killing `accelerate launch` or `torchrun` can leave its workers "
        "training; stop the pid named here), or choose another --output_dir."
    )


def probe_lock(folder: str | Path) -> None:
    """Raise `FolderInUseError` if a live run holds ``folder``'s lock; creates nothing."""
    path = Path(folder) / LOCK_FILE
    try:
        fd = os.open(path, os.O_RDWR)
    except FileNotFoundError:
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        fcntl.flock(fd, fcntl.LOCK_UN)
    except BlockingIOError:
        raise FolderInUseError(_in_use_message(Path(folder), path)) from None
    finally:
        os.close(fd)


# -- a fresh run's checks --------------------------------------------------------------------
def found_work(folder: str | Path) -> list[str]:
    """What of another run's work ``folder`` holds, described for an error message."""
    folder = Path(folder)
    found = []
    saved = checkpoint.list_checkpoints(folder / "checkpoints")
    if saved:
        found.append(f"checkpoints/ ({len(saved)}, the newest {saved[-1].name})")
    found += [f"{name}/" for name in ("model",) if (folder / name).is_dir()]
    found += [name for name in ("summary.json", "report.json") if (folder / name).is_file()]
    return found


def check_fresh(folder: str | Path) -> None:
    """Raise `FileExistsError` if a fresh run in ``folder`` would replace another run's work."""
    found = found_work(folder)
    if found:
        raise FileExistsError(
            f"output_dir {folder} holds another run's work: {', '.join(found)}. Pass "
            "--overwrite_output_dir to replace it, --resume latest to continue that run, or "
            "choose another --output_dir."
        )


def check_output_dir(config) -> None:
    """What recipes call first, before loading data: fail now if `Trainer.fit` would refuse
    ``config.output_dir`` for a fresh run (resume is checked against the checkpoint later).

    Only the launch's first process looks: another may get here after the main process took the
    lock in `fit` (the launcher stops the others when the main process fails)."""
    _check_flags(config)
    if os.environ.get("RANK", "0") != "0":
        return
    probe_lock(config.output_dir)
    if not config.resume and not config.overwrite_output_dir:
        check_fresh(config.output_dir)


def _check_flags(config) -> None:
    if config.overwrite_output_dir and config.resume:
        raise ValueError(
            f"--overwrite_output_dir removes the run that --resume {config.resume} would "
            "continue: give one of them"
        )


def clear(folder: str | Path) -> list[str]:
    """Remove what a run writes into ``folder`` (`OUTPUTS`); return the names removed."""
    removed = []
    for name in OUTPUTS:
        path = Path(folder) / name
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()
        else:
            continue
        removed.append(name)
    return removed


# -- checkpoints of one run ------------------------------------------------------------------
def stamp(checkpoint_dir: str | Path, record: dict[str, Any]) -> None:
    """Write the run's record into a checkpoint folder (before it is committed)."""
    _write_json(Path(checkpoint_dir) / RUN_FILE, record)


def run_id_of(checkpoint_dir: str | Path) -> str | None:
    record = _read_json(Path(checkpoint_dir) / RUN_FILE)
    return record.get("run_id") if record else None


def own_checkpoints(root: str | Path, run_id: str) -> list[Path]:
    """The complete checkpoints under ``root`` stamped with ``run_id``, oldest first."""
    return [p for p in checkpoint.list_checkpoints(root) if run_id_of(p) == run_id]


def latest(root: str | Path, run_id: str) -> Path | None:
    found = own_checkpoints(root, run_id)
    return found[-1] if found else None


def prune(root: str | Path, run_id: str, keep: int) -> None:
    """Remove all but the newest ``keep`` of ``run_id``'s checkpoints (0: keep all)."""
    if keep > 0:
        for old in own_checkpoints(root, run_id)[:-keep]:
            shutil.rmtree(old, ignore_errors=True)


def _step(path: Path) -> int | None:
    name = path.name
    return int(name[5:]) if name.startswith("step-") and name[5:].isdigit() else None


# -- claiming the folder ---------------------------------------------------------------------
@dataclass
class Run:
    """The run `claim` decided on: its id, the record its checkpoints carry, where it resumes
    from, and the configuration differences allowed on resume (name -> (saved, new))."""

    run_id: str
    record: dict[str, Any]
    resume_from: Path | None = None
    changed: dict[str, tuple[Any, Any]] = field(default_factory=dict)
    lock: FolderLock | None = None

    def release(self) -> None:
        if self.lock is not None:
            self.lock.release()
            self.lock = None


def claim(folder: str | Path, config, facts: dict[str, Any], accelerator) -> Run:
    """Lock ``folder`` and decide the run (collective: every process calls it).

    The main process takes the lock, checks the folder, removes an old run for
    ``overwrite_output_dir``, picks the checkpoint to resume and writes ``run.json``; every
    process gets its decision, or its error. Then every process checks that it sees that
    ``run.json``: checkpoints need one folder shared by every machine.
    """
    folder, acc = Path(folder), accelerator
    outcome: Run | Exception | None = None
    lock = None
    if acc.is_main_process:
        try:
            lock = FolderLock(folder)
            outcome = _open_run(folder, config, facts)
        except Exception as e:  # every process must learn of it, or the others would hang
            outcome = e
    if acc.num_processes > 1:
        sent = _broadcast(outcome)
        outcome = outcome if acc.is_main_process else sent  # the main keeps its own traceback
    if isinstance(outcome, Exception):
        if lock is not None:
            lock.release()
        raise outcome
    run = dataclasses.replace(outcome, lock=lock)
    try:
        check_shared(folder, run.run_id, acc)
    except RuntimeError:
        run.release()
        raise
    return run


def _broadcast(outcome):
    from accelerate.utils import broadcast_object_list

    if isinstance(outcome, Exception):  # sent as (type name, message): any exception pickles
        outcome = (type(outcome).__name__, str(outcome))
    sent = broadcast_object_list([outcome])[0]
    if isinstance(sent, tuple):
        kinds = {k.__name__: k for k in (FolderInUseError, FileExistsError, FileNotFoundError)}
        return kinds.get(sent[0], ValueError if sent[0] == "ValueError" else RuntimeError)(sent[1])
    return sent


def _open_run(folder: Path, config, facts: dict[str, Any]) -> Run:
    """The main process's decision for `claim`."""
    _check_flags(config)
    root = folder / "checkpoints"
    current = _read_json(folder / RUN_FILE)  # the run that owns the folder, if any
    path: Path | None = None
    if config.resume == "latest":
        saved = checkpoint.list_checkpoints(root)
        ids = {run_id_of(p) for p in saved}
        if current is not None:
            path = latest(root, current["run_id"])
        elif len(ids) == 1 and None not in ids:  # run.json lost: the checkpoints name one run
            path = saved[-1]
        elif saved:
            raise FileExistsError(
                f"{root} holds checkpoints of "
                f"{'no recorded run' if None in ids else 'several runs'} and {folder} has no "
                f"{RUN_FILE} naming the one to continue: resume one by its path, --resume "
                f"{saved[-1]}, or start over with --overwrite_output_dir"
            )
    elif config.resume:
        path = Path(config.resume)
        if not (path / "state.pt").is_file():
            raise FileNotFoundError(f"no checkpoint at {path} (missing state.pt)")

    record = {
        "started": time.strftime("%Y-%m-%d %H:%M:%S"),
        "config": json.loads(json.dumps(dataclasses.asdict(config), default=str)),
        "facts": facts,
    }
    if path is None:  # fresh (also 'latest' before the run's first checkpoint)
        if config.overwrite_output_dir:
            removed = clear(folder)
            if removed:
                warnings.warn(
                    f"--overwrite_output_dir removed {', '.join(removed)} from {folder}",
                    stacklevel=4,
                )
        else:
            check_fresh(folder)
        run = Run(uuid.uuid4().hex, record)
    else:
        run = _resumed_run(folder, path, current, config, facts, record)
    run.record = {"run_id": run.run_id, **record}
    if run.resume_from is not None:
        run.record["resumed_from"] = str(run.resume_from)
    _write_json(folder / RUN_FILE, run.record)
    return run


def _resumed_run(folder, path, current, config, facts, record) -> Run:
    saved = _read_json(path / RUN_FILE)
    if saved is None:
        warnings.warn(
            f"{path} has no {RUN_FILE} (written by an older multicon): its configuration is not "
            "compared with this run's",
            stacklevel=3,
        )
        return Run(uuid.uuid4().hex, record, path)
    changed = compare(saved, dataclasses.asdict(config), facts, config.allow_config_change, path)
    run_id = saved["run_id"]
    if current is None and path.parent.resolve() != (folder / "checkpoints").resolve():
        check_fresh(folder)  # a run from elsewhere must not land on another run's model
    if current is not None and current["run_id"] != run_id:
        theirs = own_checkpoints(folder / "checkpoints", current["run_id"])
        if theirs:
            raise FileExistsError(
                f"output_dir {folder} holds checkpoints of another run ({theirs[-1].name}); "
                f"continuing the run of {path} there would mix the two: choose another "
                "--output_dir"
            )
    step = _step(path)
    newer = [
        p
        for p in own_checkpoints(folder / "checkpoints", run_id)
        if step is not None and _step(p) > step
    ]
    if newer:  # a branch: its own id, so `latest` and pruning never mix it with the later steps
        warnings.warn(
            f"resuming from {path.name} although the run has newer checkpoints "
            f"({', '.join(p.name for p in newer)}): this continuation is a new run; those stay "
            "until it writes the same steps",
            stacklevel=3,
        )
        run_id = uuid.uuid4().hex
    return Run(run_id, record, path, changed)


def compare(
    saved: dict[str, Any],
    config: dict[str, Any],
    facts: dict[str, Any],
    allow: str = "",
    where: str | Path = "the checkpoint",
) -> dict[str, tuple[Any, Any]]:
    """Differences between a saved run record and the new run's config and facts.

    Returns every difference (name -> (saved, new)) when each is harmless (`HARMLESS`: length,
    logging, evaluation, checkpoint frequency, workers) or named in ``allow`` (comma list).
    Raises `ValueError` naming the others with both values. Keys either side lacks (a field of
    another multicon version) are not compared.

    Example:
        >>> saved = {"config": {"lr": 0.1, "epochs": 5}, "facts": {}}
        >>> compare(saved, {"lr": 0.1, "epochs": 9}, {})
        {'epochs': (5, 9)}
        >>> try:
        ...     compare(saved, {"lr": 0.2, "epochs": 5}, {})
        ... except ValueError as e:
        ...     print(str(e).splitlines()[1])
          lr: 0.1 -> 0.2
        >>> compare(saved, {"lr": 0.2, "epochs": 5}, {}, allow="lr")
        {'lr': (0.1, 0.2)}
    """
    new = {**json.loads(json.dumps(config, default=str)), **facts}
    old = {**saved.get("config", {}), **saved.get("facts", {})}
    allowed = {name.strip() for name in allow.split(",") if name.strip()}
    if "optimizer" in allowed:  # a new optimizer brings its class (or a custom one)
        allowed.add("optimizer.class")
    unknown = sorted(allowed - new.keys())
    if unknown:
        raise ValueError(
            f"--allow_config_change names {', '.join(unknown)}, which this run does not have; "
            "use the names a refused resume lists (TrainConfig fields, model.*, pairs.*)"
        )
    changed = {
        k: (old[k], new[k])
        for k in new
        if k in old and json.dumps(old[k], sort_keys=True) != json.dumps(new[k], sort_keys=True)
    }
    refused = {
        k: v
        for k, v in changed.items()
        if not _harmless(k) and (k not in allowed or _restored_from_weights(k))
    }
    if refused:
        lines = []
        for k, (a, b) in refused.items():
            fixed = _restored_from_weights(k)
            note = " (held in the weights: cannot change on resume)" if fixed else ""
            lines.append(f"  {k}: {a} -> {b}{note}")
        allowable = [k for k in refused if not _restored_from_weights(k)]
        hint = f"allow them with --allow_config_change {','.join(allowable)}, " if allowable else ""
        raise ValueError(
            f"resuming from {where} would change the run; saved -> new:\n"
            + "\n".join(lines)
            + f"\nRun with the saved values, {hint}or start a new run (--overwrite_output_dir "
            "or another --output_dir)."
        )
    return changed


# -- several machines ------------------------------------------------------------------------
def check_shared(folder: str | Path, run_id: str, accelerator) -> None:
    """Raise `RuntimeError` on every process unless each sees the ``run.json`` with ``run_id``
    that the main process wrote: checkpoints need one folder shared by every machine (and every
    process given the same output_dir). Collective."""
    acc = accelerator
    if acc.num_processes == 1:
        return
    missing = False
    if not acc.is_main_process:
        deadline = time.monotonic() + SHARED_WAIT_S
        while (missing := run_id_of(folder) != run_id) and time.monotonic() < deadline:
            time.sleep(0.5)
    from accelerate.utils import gather_object

    hosts = sorted({h for h in gather_object([socket.gethostname() if missing else ""]) if h})
    if hosts:
        raise RuntimeError(
            f"output_dir {folder} is not one folder shared by every machine: the processes on "
            f"{', '.join(hosts)} do not see the {RUN_FILE} the main process wrote there. Every "
            "process writes its random state into the checkpoint folder the main process "
            "creates, and resume reads them all: put --output_dir on a filesystem every machine "
            "mounts (NFS, Lustre, a cloud file store). See docs/training.md, several machines."
        )


# -- honouring allowed changes on resume -----------------------------------------------------
def keep_new_hyperparameters(optimizer, scheduler, fresh_groups: list[dict[str, Any]]) -> None:
    """After loading a checkpoint's optimizer and scheduler: put back the new run's settings
    (lr, weight decay, momentum, ...) that loading replaced with the saved ones, and set each
    group's rate to the schedule's value at the saved step."""
    for group, fresh in zip(optimizer.param_groups, fresh_groups, strict=True):
        group.update({k: v for k, v in fresh.items() if k != "lr"})
    scheduler.base_lrs = [g["initial_lr"] for g in fresh_groups]
    for group, base, factor in zip(
        optimizer.param_groups, scheduler.base_lrs, scheduler.lr_lambdas, strict=True
    ):
        group["lr"] = base * factor(scheduler.last_epoch)
    scheduler._last_lr = [g["lr"] for g in optimizer.param_groups]


def rescale_position(
    position: dict[str, int],
    changed: dict[str, tuple[Any, Any]],
    batch_size: int,
    processes: int,
) -> dict[str, int]:
    """The saved position with ``step_in_epoch`` counted in the new global batch (an allowed
    change of batch_size or processes): the pairs already seen in the epoch stay seen.

    Example:
        >>> rescale_position({"epoch": 1, "step_in_epoch": 6, "global_step": 16},
        ...                  {"batch_size": (8, 16)}, batch_size=16, processes=1)
        {'epoch': 1, 'step_in_epoch': 3, 'global_step': 16}
    """
    old = changed.get("batch_size", (batch_size,))[0] * changed.get("processes", (processes,))[0]
    new = batch_size * processes
    if old == new:
        return position
    return {**position, "step_in_epoch": position["step_in_epoch"] * old // new}


# -- files -----------------------------------------------------------------------------------
def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, json.JSONDecodeError) as e:
        raise ValueError(f"{path} is not a readable run record: {e}") from None


def _write_json(path: Path, record: dict[str, Any]) -> None:
    tmp = path.with_name(path.name + ".partial")
    tmp.write_text(json.dumps(record, indent=1, default=str))
    os.replace(tmp, path)
