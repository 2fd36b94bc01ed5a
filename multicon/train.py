"""The training loop, on Hugging Face Accelerate: one process, several GPUs or several machines.

The trainer knows nothing of modalities or methods: it takes a model, a pair generator
(map-style, fed by DataLoader workers; or batch-style, made on the device) and a step strategy
(`multicon.steps`: autograd by default), and runs the loop: batches → step → after-step, with
mixed precision, a warmup + decay schedule, trackers, atomic checkpoints and exact resume.
"""

from __future__ import annotations

import dataclasses
import math
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from multicon import checkpoint, run_folder
from multicon.dist import set_independent
from multicon.launch_checks import check_world_size
from multicon.model import ContrastiveOutput
from multicon.optim import build_optimizer, lr_schedule
from multicon.pairs.base import (
    BatchPairGenerator,
    MapPairGenerator,
    PairBatch,
    PairGenerator,
    SeededPairs,
)
from multicon.steps.autograd import AutogradStep
from multicon.steps.base import Step, StepContext


class NonFiniteLossError(RuntimeError):
    """Training produced a NaN or infinite loss; the last good checkpoint is left untouched."""


@dataclass
class TrainConfig:
    """Everything the trainer needs; recipes parse it from the command line (HfArgumentParser)."""

    output_dir: str = field(default="runs/multicon", metadata={"help": "Run folder."})
    epochs: int = field(default=10, metadata={"help": "Passes over the pair generator."})
    max_steps: int = field(default=0, metadata={"help": "Stop after this many steps (0: epochs)."})
    batch_size: int = field(default=256, metadata={"help": "Pairs per process per step."})
    optimizer: Literal["adamw", "sgd", "lars"] = "adamw"
    lr: float = field(default=1e-3, metadata={"help": "Peak learning rate."})
    weight_decay: float = 1e-4
    momentum: float = field(default=0.9, metadata={"help": "SGD/LARS momentum."})
    schedule: Literal["cosine", "linear", "constant"] = "cosine"
    warmup_steps: int = 0
    grad_clip: float = field(default=0.0, metadata={"help": "Max gradient norm (0: off)."})
    mixed_precision: Literal["no", "bf16", "fp16"] = "no"
    seed: int = 0
    num_workers: int = field(default=0, metadata={"help": "DataLoader workers (map-style)."})
    log_every: int = field(default=10, metadata={"help": "Steps between metric logs."})
    eval_every: int = field(default=1, metadata={"help": "Epochs between evaluations (0: off)."})
    checkpoint_every: int = field(
        default=0, metadata={"help": "Steps between checkpoints (0: at the end of each epoch)."}
    )
    keep_checkpoints: int = field(default=2, metadata={"help": "Newest checkpoints kept (0: all)."})
    resume: str = field(
        default="", metadata={"help": "'' (fresh), 'latest' (newest in output_dir), or a path."}
    )
    overwrite_output_dir: bool = field(
        default=False,
        metadata={"help": "A fresh run replaces the run already in output_dir (else refused)."},
    )
    allow_config_change: str = field(
        default="",
        metadata={"help": "Comma list of settings a resume may change (else refused)."},
    )
    log_with: str = field(
        default="tensorboard,jsonl", metadata={"help": "Comma list of trackers ('' for none)."}
    )
    progress_bar: bool = True

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "log_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.lr <= 0:
            raise ValueError(f"lr must be positive, got {self.lr}")
        for name in (
            "max_steps", "weight_decay", "warmup_steps", "grad_clip", "num_workers",
            "eval_every", "checkpoint_every", "keep_checkpoints",
        ):  # fmt: skip
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if not 0 <= self.momentum < 1:  # 1 or more: the velocity never decays, steps grow
            raise ValueError(f"momentum must be in [0, 1), got {self.momentum}")


@dataclass
class TrainResult:
    """What `Trainer.fit` returns."""

    global_step: int
    loss: float
    history: list[dict[str, float]]
    evaluations: list[dict[str, float]]
    output_dir: Path


@dataclass
class _Position:
    epoch: int = 0
    step_in_epoch: int = 0
    global_step: int = 0


class Trainer:
    """Train a model on a pair generator with a step strategy.

    Args:
        model: what is trained and checkpointed: a `ContrastiveModel` (`multicon.methods`) for
            the default `AutogradStep`, or what ``step`` trains (a `Word2Vec` for
            `FusedSkipGram`).
        pairs: a `MapPairGenerator` or `BatchPairGenerator`.
        config: a `TrainConfig`.
        step: how a batch becomes an update (`multicon.steps`); default `AutogradStep()`.
        evaluate: ``evaluate(model) -> metrics`` run on the main process every
            ``config.eval_every`` epochs, with the model in eval mode.
        optimizer: ``optimizer(model) -> torch.optim.Optimizer`` to replace the built-in choices.
        accelerator: an `accelerate.Accelerator` to use instead of one built from the config.

    Example:
        >>> import torch, tempfile
        >>> from multicon import BatchPairGenerator, PairBatch, methods
        >>> class Jitter(BatchPairGenerator):
        ...     def __init__(self, x): self.x = x
        ...     def num_pairs(self): return len(self.x)
        ...     def batches(self, batch_size, *, epoch, device, rank=0, world_size=1):
        ...         order = torch.randperm(len(self.x), generator=self.rng(epoch))
        ...         for idx in self.shard(order, batch_size, rank, world_size):
        ...             x = self.x[idx].to(device)
        ...             yield PairBatch(x + 0.05 * torch.randn_like(x), x, idx.to(device))
        >>> model = methods.simclr(torch.nn.Linear(8, 4))
        >>> with tempfile.TemporaryDirectory() as out:
        ...     cfg = TrainConfig(output_dir=out, epochs=2, batch_size=16, log_with="",
        ...                       progress_bar=False)
        ...     Trainer(model, Jitter(torch.randn(64, 8)), cfg).fit().global_step
        8
    """

    def __init__(
        self,
        model: nn.Module,
        pairs: PairGenerator,
        config: TrainConfig,
        *,
        step: Step | None = None,
        evaluate: Callable[[nn.Module], dict[str, float]] | None = None,
        optimizer: Callable[[nn.Module], torch.optim.Optimizer] | None = None,
        accelerator=None,
    ) -> None:
        if not isinstance(pairs, MapPairGenerator | BatchPairGenerator):
            raise TypeError(
                "pairs must be a MapPairGenerator or a BatchPairGenerator, "
                f"got {type(pairs).__name__}"
            )
        self.step = step if step is not None else AutogradStep()
        if not isinstance(self.step, Step):
            raise TypeError(f"step must be a multicon.steps.Step, got {type(self.step).__name__}")
        self.config = config
        self.pairs = pairs
        # None: decided in `fit` (deferred on accelerators, see `_watch_loss`)
        self._defer_finite_check: bool | None = None
        self._first_bad: torch.Tensor | None = None  # (loss, step, epoch) of the first bad step
        self.evaluate_fn = evaluate
        self.output_dir = Path(config.output_dir)
        self.accelerator = accelerator or self._build_accelerator()
        check_world_size(self.accelerator.num_processes, self.accelerator.process_index)
        self._run: run_folder.Run | None = None  # claimed by `fit`
        self.step.check(model, config, self.accelerator)  # before any work: bad settings named
        self.model = model
        self.optimizer = (optimizer or self._default_optimizer)(model)

    # -- set-up ------------------------------------------------------------------------------
    def _build_accelerator(self):
        from accelerate import Accelerator, DataLoaderConfiguration
        from accelerate.utils import DistributedDataParallelKwargs

        from multicon.tracking import JsonlTracker

        trackers: list = []
        for name in filter(None, (s.strip() for s in self.config.log_with.split(","))):
            if name == "jsonl":
                trackers.append(JsonlTracker("multicon", self.output_dir))
            else:
                trackers.append(name)
        return Accelerator(
            mixed_precision=self.config.mixed_precision,
            log_with=trackers or None,
            project_dir=str(self.output_dir),
            dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True),
            # Queues are identical on every rank already; broadcasting them each step is waste.
            kwargs_handlers=[DistributedDataParallelKwargs(broadcast_buffers=False)],
        )

    def _default_optimizer(self, model: nn.Module) -> torch.optim.Optimizer:
        c = self.config
        return build_optimizer(model, c.optimizer, c.lr, c.weight_decay, c.momentum)

    def _dataloader(self):
        c, pairs = self.config, self.pairs
        if len(pairs) < c.batch_size * self.accelerator.num_processes:
            raise ValueError(
                f"the batch of {c.batch_size} pairs per process x {self.accelerator.num_processes} "
                f"processes is larger than the dataset of {len(pairs)} pairs"
            )
        self._seeded = SeededPairs(pairs, c.seed)  # per-pair randomness from (seed, epoch, index)
        loader = torch.utils.data.DataLoader(
            self._seeded,
            batch_size=c.batch_size,
            shuffle=True,
            drop_last=True,
            num_workers=c.num_workers,
            collate_fn=pairs.collate,
            pin_memory=self.accelerator.device.type == "cuda",
            persistent_workers=c.num_workers > 0,
            generator=torch.Generator().manual_seed(c.seed),
        )
        return self.accelerator.prepare_data_loader(loader)

    def _steps_per_epoch(self, loader) -> int:
        if loader is not None:
            return len(loader)
        n = self.pairs.num_pairs()
        if n == 0:
            raise ValueError(f"the pair generator {type(self.pairs).__name__} has no pairs")
        return self.pairs.num_batches(self.config.batch_size, self.accelerator.num_processes)

    def _epoch_batches(self, loader, epoch: int, skip: int) -> Iterator[PairBatch]:
        acc = self.accelerator
        if loader is not None:
            self._seeded.set_epoch(epoch)
            loader.set_epoch(epoch)
            it = acc.skip_first_batches(loader, skip) if skip else loader
            yield from it
            return
        it = self.pairs.batches(
            self.config.batch_size,
            epoch=epoch,
            device=acc.device,
            rank=acc.process_index,
            world_size=acc.num_processes,
        )
        for i, batch in enumerate(it):
            if i >= skip:  # batches are a pure function of (seed, epoch): replaying is exact
                yield batch

    # -- checkpoints -------------------------------------------------------------------------
    @property
    def checkpoint_root(self) -> Path:
        return self.output_dir / "checkpoints"

    def save_checkpoint(self, pos: _Position, scheduler, history: list) -> Path:
        acc = self.accelerator
        if self._defer_finite_check:  # never save the state a non-finite step left
            self._check_finite()
        step = pos.global_step
        if acc.is_main_process:
            checkpoint.begin(self.checkpoint_root, step)
        acc.wait_for_everyone()
        tmp = checkpoint.temporary_dir(self.checkpoint_root, step)
        checkpoint.write_file_atomic(checkpoint.rng_state(), tmp / f"rng-{acc.process_index}.pt")
        if acc.is_main_process:
            state = {
                "model": acc.unwrap_model(self.model).state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "scaler": acc.scaler.state_dict() if acc.scaler is not None else {},
                "position": dataclasses.asdict(pos),
                "history": history,
            }
            checkpoint.write_file_atomic(state, tmp / "state.pt")
            run_folder.stamp(tmp, self._run.record)
        acc.wait_for_everyone()
        path = checkpoint.checkpoint_dir(self.checkpoint_root, step)
        if acc.is_main_process:
            checkpoint.commit(self.checkpoint_root, step)
            run_folder.prune(self.checkpoint_root, self._run.run_id, self.config.keep_checkpoints)
        acc.wait_for_everyone()
        return path

    def _resume(self, scheduler) -> tuple[_Position, list]:
        path, changed = self._run.resume_from, self._run.changed  # chosen by `run_folder.claim`
        if path is None:
            return _Position(), []
        state, rng = checkpoint.load(path, self.accelerator.process_index)
        acc = self.accelerator
        acc.unwrap_model(self.model).load_state_dict(state["model"])
        fresh = [{k: v for k, v in g.items() if k != "params"} for g in self.optimizer.param_groups]
        if "optimizer" in changed or "optimizer.class" in changed:  # an allowed new optimizer
            warnings.warn(f"the optimizer changed: its state in {path} is not loaded", stacklevel=3)
        else:
            self.optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        if changed:  # allowed changes: the new lr, weight decay, ... replace the loaded ones
            run_folder.keep_new_hyperparameters(self.optimizer, scheduler, fresh)
        if acc.scaler is not None and state["scaler"]:
            acc.scaler.load_state_dict(state["scaler"])
        if rng is not None:
            checkpoint.set_rng_state(rng)
        c = self.config
        position = run_folder.rescale_position(
            state["position"], changed, c.batch_size, acc.num_processes
        )
        return _Position(**position), list(state["history"])

    # -- the loop ----------------------------------------------------------------------------
    def _watch_loss(self, loss: torch.Tensor, pos: _Position) -> None:
        """Note whether this step's loss is finite. On the CPU it is checked now. On an
        accelerator, reading it would make the host wait for the device every step, so the
        first non-finite step is kept on the device and read at the next logged step,
        evaluation or checkpoint: no checkpoint is ever written after it."""
        loss = loss.detach()
        if self._defer_finite_check:
            # filled on the device: a tensor built from Python numbers would be copied to it,
            # and that copy waits for the device
            now = loss.new_full((3,), float(pos.epoch), dtype=torch.float64)
            now[0], now[1] = loss.reshape(()), float(pos.global_step)
            first = self._first_bad if self._first_bad is not None else torch.full_like(now, -1.0)
            self._first_bad = torch.where(~torch.isfinite(now[0]) & (first[1] < 0), now, first)
            return
        value = loss.item()
        if not math.isfinite(value):
            self._first_bad = torch.tensor([value, pos.global_step, pos.epoch], dtype=torch.float64)
        self._check_finite()

    def _check_finite(self) -> None:
        """Raise `NonFiniteLossError` if a loss so far was NaN or infinite (on any rank).

        Steps and epochs are counted from 1, as checkpoint folders count steps (``step-5`` is
        the state after 5 updates). The checkpoint it calls the last good one holds only finite
        tensors and is not the state the failing step started from (step n's loss is computed
        on the weights of checkpoint n-1).
        """
        acc, first = self.accelerator, self._first_bad
        synced = acc.num_processes > 1 and not self.step.hogwild  # hogwild: no sync
        if first is None and not synced:
            return
        bad = torch.zeros(1) if first is None else (first[1:2] >= 0).float()
        if synced:  # every rank stops together
            bad = acc.reduce(bad.to(acc.device), reduction="sum")
        if bad.item() > 0:
            value, step, epoch = first.tolist() if first is not None else (math.nan, -1, -1)
            step = int(step) + 1 if step >= 0 else None  # recorded as the steps done before it
            where = f"at step {step} (epoch {int(epoch) + 1})" if step else "on another rank"
            if acc.is_main_process:  # reads the checkpoints: once, not once per rank
                last, passed = _last_good_checkpoint(self.checkpoint_root, step)
                kept = f"the last good checkpoint is {last}" if last else "no checkpoint is good"
                kept += f" ({'; '.join(passed)})" if passed else ""
            else:
                kept = "the main process names the last good checkpoint"
            raise NonFiniteLossError(
                f"loss is {value} {where}; training stopped and {kept}. Lower the learning "
                "rate, raise the temperature or enable grad_clip (for embedding tables under "
                "sgd: row clipping, `multicon.optim.SGD(row_clip=...)`)."
            )

    def _evaluate(self, pos: _Position) -> dict[str, float] | None:
        acc = self.accelerator
        if self._defer_finite_check:
            self._check_finite()
        metrics = None
        if self.evaluate_fn is not None and acc.is_main_process:
            model = acc.unwrap_model(self.model)
            model.eval()
            with torch.no_grad():
                metrics = {k: float(v) for k, v in self.evaluate_fn(model).items()}
            model.train()
            metrics = {"epoch": pos.epoch, "step": pos.global_step, **metrics}
            acc.log({f"eval/{k}": v for k, v in metrics.items()}, step=pos.global_step)
        acc.wait_for_everyone()
        return metrics

    def _stepping_optimizer(self) -> torch.optim.Optimizer:
        """The optimizer to call ``step`` / ``zero_grad`` on each step.

        Accelerate's wrapper earns its keep with a gradient scaler (fp16) or on XLA; otherwise
        it only forwards the call, after an uncached package lookup and an
        ``inspect.signature`` per step (0.4 ms measured: 10% of a word2vec step on CPU).
        """
        from accelerate.utils import DistributedType

        acc, wrapped = self.accelerator, self.optimizer
        plain = acc.scaler is None and acc.distributed_type != DistributedType.XLA
        inner = getattr(wrapped, "optimizer", None)
        return inner if plain and acc.gradient_accumulation_steps == 1 and inner else wrapped

    def fit(self) -> TrainResult:
        """Train to ``epochs`` / ``max_steps`` (resuming if asked) and return the history.

        The output folder is locked meanwhile and checked first (`multicon.run_folder`): a fresh
        run refuses another run's work, a resume refuses a changed configuration.
        """
        try:
            return self._fit()
        finally:
            if self._run is not None:
                self._run.release()

    def _fit(self) -> TrainResult:
        c, acc = self.config, self.accelerator
        loader, steps_per_epoch, total, scheduler = self._start()
        pos, history = self._resume(scheduler)
        evaluations = [h for h in history if "eval" in h]
        if c.log_with:
            acc.init_trackers("multicon", config=_flat_config(c))
        bar = self._progress_bar(total, pos.global_step)
        ctx = StepContext(
            acc,
            self.model,
            acc.unwrap_model(self.model),
            self._stepping_optimizer(),
            lr=0.0,
            grad_clip=c.grad_clip,
            watch=lambda loss: self._watch_loss(loss, pos),
        )
        self.model.train()
        meter = _Meter(c.batch_size * acc.num_processes)
        while pos.global_step < total and pos.epoch < math.ceil(total / steps_per_epoch):
            for batch in self._epoch_batches(loader, pos.epoch, pos.step_in_epoch):
                ctx.lr = ctx.optimizer.param_groups[0]["lr"]
                out = self.step(batch, ctx)
                with warnings.catch_warnings():  # a fused step never calls optimizer.step
                    warnings.filterwarnings("ignore", "Detected call of `lr_scheduler.step")
                    scheduler.step()
                pos.global_step += 1
                pos.step_in_epoch += 1
                logged = pos.global_step % c.log_every == 0 or pos.global_step == total
                extra = self.step.after_step(out, ctx, pos.global_step / total, logged)
                meter.samples += meter.global_batch
                if logged:
                    self._log(out, extra, pos, scheduler, history, meter, bar)
                if bar is not None:
                    bar.update(1)
                if c.checkpoint_every and pos.global_step % c.checkpoint_every == 0:
                    self.save_checkpoint(pos, scheduler, history)
                if pos.global_step >= total:
                    break
            self._end_epoch(pos, total, steps_per_epoch, scheduler, history, evaluations)
        if bar is not None:
            bar.close()
        acc.end_training()
        last = next((h["loss"] for h in reversed(history) if "loss" in h), math.nan)
        return TrainResult(pos.global_step, last, history, evaluations, self.output_dir)

    def _start(self):
        """Seed, build the loader and the schedule, place model and optimizer."""
        c, acc = self.config, self.accelerator
        from accelerate.utils import set_seed

        set_seed(c.seed, device_specific=self.step.hogwild)  # hogwild ranks: independent draws
        set_independent(self.step.hogwild)  # and noise drawn for their own pairs
        if self._defer_finite_check is None:
            self._defer_finite_check = acc.device.type != "cpu"
        self._first_bad = None
        self.output_dir.mkdir(parents=True, exist_ok=True)
        loader = self._dataloader() if isinstance(self.pairs, MapPairGenerator) else None
        steps_per_epoch = self._steps_per_epoch(loader)
        if steps_per_epoch < 1:
            raise ValueError(
                f"no full step fits in one epoch: {self.pairs.num_pairs()} pairs for batches of "
                f"{c.batch_size} x {acc.num_processes} processes"
            )
        total = c.max_steps or c.epochs * steps_per_epoch
        scheduler = lr_schedule(self.optimizer, c.schedule, total, c.warmup_steps)
        facts = run_folder.describe(
            acc.unwrap_model(self.model),
            self.pairs,
            getattr(self.optimizer, "optimizer", self.optimizer),
            acc.num_processes,
        )
        facts.update(run_folder.describe_step(self.step))
        self._run = run_folder.claim(self.output_dir, c, facts, acc)  # lock, check, run.json
        self.model, self.optimizer = self.step.prepare(self.model, self.optimizer, acc)
        return loader, steps_per_epoch, total, scheduler

    def _progress_bar(self, total: int, initial: int):
        if not (self.config.progress_bar and self.accelerator.is_local_main_process):
            return None
        from tqdm.auto import tqdm

        return tqdm(total=total, initial=initial, unit="step", dynamic_ncols=True)

    def _log(self, out: ContrastiveOutput, extra, pos, scheduler, history, meter, bar) -> None:
        """Reduce the loss over processes (a summed loss as a sum) and log one record."""
        acc = self.accelerator
        if self._defer_finite_check:
            self._check_finite()
        reduction = self.step.reduction(acc.unwrap_model(self.model))
        loss = acc.reduce(out.loss.detach().float(), reduction=reduction).item()
        loss_module = getattr(acc.unwrap_model(self.model), "loss", None)
        record = {
            "loss": loss,
            "lr": scheduler.get_last_lr()[0],
            "samples_per_s": meter.rate(),
            "temperature": float(getattr(loss_module, "temperature", math.nan)),
            "epoch": pos.epoch,
            **extra,
        }
        history.append({"step": pos.global_step, **record})
        acc.log({f"train/{k}": v for k, v in record.items()}, step=pos.global_step)
        if bar is not None:
            bar.set_postfix(loss=f"{loss:.4f}", sps=f"{record['samples_per_s']:.0f}")

    def _end_epoch(self, pos, total, steps_per_epoch, scheduler, history, evaluations) -> None:
        """Advance the epoch, evaluate and checkpoint as the config asks."""
        c = self.config
        if pos.global_step < total or pos.step_in_epoch >= steps_per_epoch:
            pos.epoch, pos.step_in_epoch = pos.epoch + 1, 0
        if c.eval_every and (pos.epoch % c.eval_every == 0 or pos.global_step >= total):
            metrics = self._evaluate(pos)
            if metrics is not None:
                evaluations.append(metrics)
                history.append({"eval": 1.0, **metrics})
        if not c.checkpoint_every or pos.global_step >= total:
            self.save_checkpoint(pos, scheduler, history)


class _Meter:
    """Samples per second between logged steps."""

    def __init__(self, global_batch: int) -> None:
        self.global_batch, self.samples, self.tick = global_batch, 0, time.perf_counter()

    def rate(self) -> float:
        now = time.perf_counter()
        rate = self.samples / (now - self.tick)
        self.samples, self.tick = 0, now
        return rate


def _last_good_checkpoint(root: Path, bad_step: int | None) -> tuple[Path | None, list[str]]:
    """The newest checkpoint under ``root`` whose model tensors are all finite and that the
    failing step ``bad_step`` (1-based; None: unknown) did not start from, and why each newer
    one was passed over."""
    passed = []
    for path in reversed(checkpoint.list_checkpoints(root)):
        step = int(path.name.removeprefix("step-"))
        if bad_step is not None and step >= bad_step - 1:
            if step == bad_step - 1:
                passed.append(f"step {bad_step} started from {path.name}")
            else:  # left by an earlier, longer run
                passed.append(f"{path.name} is from after step {bad_step}")
            continue
        try:  # mapped, not read into memory: a word2vec table can be GBs
            state = torch.load(path / "state.pt", map_location="cpu", weights_only=True, mmap=True)
            finite = all(
                bool(torch.isfinite(v).all())
                for v in state["model"].values()
                if isinstance(v, torch.Tensor) and v.is_floating_point()
            )
        except Exception as err:  # an unreadable checkpoint is not a good one
            passed.append(f"{path.name} cannot be read: {err}")
            continue
        if finite:
            return path, passed
        passed.append(f"{path.name} holds non-finite model tensors")
    return None, passed


def _flat_config(config: TrainConfig) -> dict[str, Any]:
    return {
        k: v if isinstance(v, int | float | str | bool) else str(v)
        for k, v in dataclasses.asdict(config).items()
    }
