"""A run never destroys or adopts another run's work; its folder is locked while it trains; the
processes are the ones the launch started (issue 19, section 2 and the launch checks of 5)."""

import fcntl
import importlib
import json
import multiprocessing
import os
import shutil
import signal
from pathlib import Path

import pytest
import torch
from test_distributed import run_two_processes

from multicon import (
    BatchPairGenerator,
    PairBatch,
    TrainConfig,
    Trainer,
    methods,
    run_folder,
)
from multicon.checkpoint import list_checkpoints

ROOT = Path(__file__).resolve().parents[1]
STEPS_PER_EPOCH = 4  # 64 pairs, batches of 16


class Jitter(BatchPairGenerator):
    def __init__(self, n=64):
        self.x = torch.randn(n, 8, generator=torch.Generator().manual_seed(0))

    def num_pairs(self):
        return len(self.x)

    def batches(self, batch_size, *, epoch, device, rank=0, world_size=1):
        order = torch.randperm(len(self.x), generator=self.rng(epoch))
        for idx in self.shard(order, batch_size, rank, world_size):
            x = self.x[idx].to(device)
            yield PairBatch(x + 0.05 * torch.randn_like(x), x, idx.to(device))


def config(out, **kw):
    base = dict(
        output_dir=str(out),
        epochs=1,
        batch_size=16,
        lr=1e-2,
        schedule="constant",
        log_with="",
        log_every=1,
        progress_bar=False,
        eval_every=0,
        keep_checkpoints=2,
    )
    return TrainConfig(**{**base, **kw})


def train(out, temperature=0.2, evaluate=None, **kw):
    torch.manual_seed(0)
    encoder = torch.nn.Linear(8, 4)
    model = methods.clip(encoder, encoder, temperature, learnable=False)  # symmetric, in-batch
    return Trainer(model, Jitter(), config(out, **kw), evaluate=evaluate).fit()


def run_ids(out):
    return {json.loads((p / "run.json").read_text())["run_id"] for p in list_checkpoints(out)}


# -- a fresh run and another run's work -------------------------------------------------------
def test_fresh_run_refuses_a_folder_holding_another_runs_checkpoints(tmp_path):
    train(tmp_path, epochs=6, checkpoint_every=2, keep_checkpoints=0)  # the older, longer run
    before = sorted(p.name for p in list_checkpoints(tmp_path / "checkpoints"))
    with pytest.raises(FileExistsError, match="--overwrite_output_dir") as error:
        train(tmp_path, epochs=2)
    assert "step-000000024" in str(error.value) and str(tmp_path) in str(error.value)
    assert sorted(p.name for p in list_checkpoints(tmp_path / "checkpoints")) == before


def test_overwrite_output_dir_replaces_the_old_run_and_keeps_its_own_checkpoints(tmp_path):
    train(tmp_path, epochs=6, checkpoint_every=2, keep_checkpoints=0)
    (tmp_path / "summary.json").write_text("{}")
    result = train(tmp_path, epochs=2, checkpoint_every=2, overwrite_output_dir=True)
    assert result.global_step == 2 * STEPS_PER_EPOCH
    names = [p.name for p in list_checkpoints(tmp_path / "checkpoints")]
    assert names == ["step-000000006", "step-000000008"]  # its own newest two, none of 6 epochs'
    assert not (tmp_path / "summary.json").exists()
    record = json.loads((tmp_path / "run.json").read_text())
    assert run_ids(tmp_path / "checkpoints") == {record["run_id"]}


def test_resume_latest_and_pruning_ignore_another_runs_checkpoints(tmp_path):
    """A checkpoint of a longer run copied into the folder (a sync, a copy by hand) is neither
    resumed from nor counted by pruning."""
    train(tmp_path / "other", epochs=6, keep_checkpoints=1)
    train(tmp_path / "run", epochs=1)
    foreign = list_checkpoints(tmp_path / "other" / "checkpoints")[-1]  # step 24
    shutil.copytree(foreign, tmp_path / "run" / "checkpoints" / foreign.name)
    result = train(tmp_path / "run", epochs=3, resume="latest")
    assert result.global_step == 3 * STEPS_PER_EPOCH  # trained on from its own step 4
    names = [p.name for p in list_checkpoints(tmp_path / "run" / "checkpoints")]
    assert names == ["step-000000008", "step-000000012", "step-000000024"]


def test_resuming_an_earlier_checkpoint_branches_off_the_later_ones(tmp_path):
    train(tmp_path, epochs=3, keep_checkpoints=0)  # steps 4, 8, 12
    early = list_checkpoints(tmp_path / "checkpoints")[0]
    with pytest.warns(UserWarning, match="newer checkpoints"):
        train(tmp_path, epochs=2, resume=str(early))  # rewrites step 8 and prunes its own only
    names = [p.name for p in list_checkpoints(tmp_path / "checkpoints")]
    assert names == ["step-000000004", "step-000000008", "step-000000012"]
    again = train(tmp_path, epochs=2, resume="latest")  # the branch's step 8, not step 12
    assert again.global_step == 2 * STEPS_PER_EPOCH


# -- resume compares the configuration -------------------------------------------------------
@pytest.mark.parametrize(
    "change,named",
    [
        ({"lr": 0.05}, "lr: 0.01 -> 0.05"),
        ({"batch_size": 8}, "batch_size: 16 -> 8"),
        ({"optimizer": "sgd"}, "optimizer: adamw -> sgd"),
        ({"temperature": 0.5}, "model.loss.temperature: 0.2"),
    ],
)
def test_resume_refuses_a_changed_setting_naming_it(tmp_path, change, named):
    train(tmp_path)
    with pytest.raises(ValueError, match="would change the run") as error:
        train(tmp_path, epochs=2, resume="latest", **change)
    assert named in str(error.value)


def test_harmless_changes_resume_silently_and_allowed_ones_take_effect(tmp_path):
    train(tmp_path, log_every=2)
    more = train(tmp_path, epochs=2, log_every=1, checkpoint_every=2, resume="latest")
    assert more.global_step == 2 * STEPS_PER_EPOCH
    lr = train(tmp_path, epochs=3, lr=0.05, resume="latest", allow_config_change="lr")
    assert lr.global_step == 3 * STEPS_PER_EPOCH
    assert [h["lr"] for h in lr.history[-STEPS_PER_EPOCH:]] == [0.05] * STEPS_PER_EPOCH
    with pytest.warns(UserWarning, match="optimizer changed"):  # its state is not loaded
        sgd = train(tmp_path, epochs=4, lr=0.05, optimizer="sgd", resume="latest",
                    allow_config_change="optimizer")  # fmt: skip
    assert sgd.global_step == 4 * STEPS_PER_EPOCH


# -- recipes ---------------------------------------------------------------------------------
def _recipe(name):
    return importlib.import_module(f"multicon.recipes.{name}")


@pytest.mark.parametrize("recipe", ["demo", "simclr", "moco", "word2vec", "clip"])
def test_recipes_refuse_a_used_output_dir(tmp_path, recipe):
    (tmp_path / "model").mkdir()
    (tmp_path / "summary.json").write_text("{}")
    data = {"simclr": "--data", "moco": "--data", "word2vec": "--corpus"}
    argv = ["--output_dir", str(tmp_path), "--max_steps", "1", "--progress_bar", "false"]
    if recipe in data:
        argv += [data[recipe], str(tmp_path / "no-data")]
    with pytest.raises(FileExistsError, match="model/, summary.json"):
        _recipe(recipe).main(argv)
    assert (tmp_path / "summary.json").read_text() == "{}"


def test_demo_recipe_overwrites_only_when_told(tmp_path):
    (tmp_path / "summary.json").write_text("{}")
    argv = ["--output_dir", str(tmp_path), "--max_steps", "1", "--width", "4", "--log_with", "",
            "--progress_bar", "false", "--eval_every", "0"]  # fmt: skip
    summary = _recipe("demo").main([*argv, "--overwrite_output_dir"])
    assert json.loads((tmp_path / "summary.json").read_text())["steps"] == summary["steps"] == 1


# -- the lock --------------------------------------------------------------------------------
def _hold_lock(folder, ready, release):
    fd = os.open(Path(folder) / ".lock", os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX)
    os.write(fd, f"pid {os.getpid()} on this host\n".encode())
    ready.set()
    release.wait(30)


def _lock_holder(folder):
    ctx = multiprocessing.get_context("fork")
    ready, release = ctx.Event(), ctx.Event()
    holder = ctx.Process(target=_hold_lock, args=(str(folder), ready, release))
    holder.start()
    assert ready.wait(30)
    return holder, release


def test_a_second_run_on_a_locked_folder_fails_naming_the_holder(tmp_path):
    holder, release = _lock_holder(tmp_path)
    try:
        with pytest.raises(RuntimeError, match=f"in use by another run: pid {holder.pid}"):
            train(tmp_path)
        assert not list_checkpoints(tmp_path / "checkpoints")
    finally:
        release.set()
        holder.join()


def test_the_lock_of_a_dead_process_is_taken_over(tmp_path):
    holder, _ = _lock_holder(tmp_path)
    os.kill(holder.pid, signal.SIGKILL)  # a killed run: the kernel drops its lock
    holder.join()
    seen = []
    result = train(tmp_path, eval_every=1, evaluate=lambda m: seen.append(
        (tmp_path / ".lock").read_text()) or {})  # fmt: skip
    assert result.global_step == STEPS_PER_EPOCH
    assert seen == [seen[0]] and seen[0].startswith(f"pid {os.getpid()} ")  # held while training
    fd = os.open(tmp_path / ".lock", os.O_RDWR)  # and released after
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    os.close(fd)


# -- launch checks ---------------------------------------------------------------------------
def test_world_size_other_than_the_launchers_fails_at_once(tmp_path, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")  # as a PartialState() made too early leaves a rank
    with pytest.raises(RuntimeError, match="started 2 processes .* counts 1"):
        train(tmp_path)
    assert not (tmp_path / "checkpoints").exists()


def test_accelerate_launch_starting_one_of_several_processes_warns(tmp_path, monkeypatch):
    # what `accelerate launch --cpu --num_processes 2` leaves: a rendezvous, one process
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    monkeypatch.setenv("ACCELERATE_DYNAMO_BACKEND", "NO")
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    with pytest.warns(UserWarning, match="started only this one"):
        train(tmp_path)


def _two_machines_worker(rank, out):
    os.environ.update(LOCAL_RANK="0", LOCAL_WORLD_SIZE="1")  # each rank its own "machine"
    run_folder.SHARED_WAIT_S = 1.0  # no network filesystem to wait for here
    try:  # ... and its own disk: the same output_dir name, different folders
        train(Path(out) / f"node{rank}", epochs=1)
        outcome = "trained"
    except Exception as e:  # noqa: BLE001 - the test reads what each rank raised
        outcome = f"{type(e).__name__}: {e}"
    Path(out, f"rank{rank}.txt").write_text(outcome)


def test_an_output_dir_not_shared_by_the_machines_is_named(tmp_path):
    run_two_processes(_two_machines_worker, str(tmp_path))
    for rank in (0, 1):
        outcome = (tmp_path / f"rank{rank}.txt").read_text()
        assert outcome.startswith("RuntimeError: output_dir"), outcome
        assert "not one folder shared by every machine" in outcome
