"""A run stopped after k steps and resumed ends exactly where an uninterrupted run does."""

import shutil

import pytest
import torch

from multicon import (
    AffineViewPairs,
    MapPairGenerator,
    Pair,
    TrainConfig,
    Trainer,
    latest_checkpoint,
    methods,
)
from multicon.checkpoint import checkpoint_dir, list_checkpoints
from multicon.encoders.small_cnn import SmallConvEncoder


def make_model():
    torch.manual_seed(0)
    encoder = SmallConvEncoder(in_channels=1, width=4, proj_dim=8, proj_hidden_dim=16)
    # momentum encoder + queue: their state must come back from the checkpoint too
    return methods.moco_v2(encoder, 20, 8, momentum=0.9, temperature=0.2)


def config(out, **kw):
    base = dict(
        output_dir=str(out),
        epochs=3,
        batch_size=8,
        lr=1e-2,
        warmup_steps=2,
        log_with="",
        progress_bar=False,
        eval_every=0,
        checkpoint_every=1,
        keep_checkpoints=0,
    )
    return TrainConfig(**{**base, **kw})


def images():
    return torch.rand(36, 1, 8, 8, generator=torch.Generator().manual_seed(0))


def test_resume_mid_epoch_matches_uninterrupted_run(tmp_path):
    full = make_model()
    result = Trainer(full, AffineViewPairs(images(), seed=1), config(tmp_path / "full")).fit()
    assert result.global_step == 15  # 5 steps per epoch (36 images, batch 8), 3 epochs

    # "kill" the run after step 7 (mid-epoch 2): keep only what was on disk then
    stopped = tmp_path / "stopped" / "checkpoints"
    stopped.mkdir(parents=True)
    shutil.copytree(
        checkpoint_dir(tmp_path / "full" / "checkpoints", 7), checkpoint_dir(stopped, 7)
    )
    resumed = make_model()
    torch.manual_seed(1234)  # resuming must restore the RNG, whatever it is now
    out = Trainer(
        resumed, AffineViewPairs(images(), seed=1), config(tmp_path / "stopped", resume="latest")
    ).fit()
    assert out.global_step == 15
    a, b = full.state_dict(), resumed.state_dict()
    for name in a:
        assert torch.equal(a[name], b[name]), name
    assert int(b["directions.0.keys.queue.filled"]) == 20  # the queue came back too


class Deterministic(MapPairGenerator):
    def __init__(self, n=40):
        self.x = torch.randn(n, 6, generator=torch.Generator().manual_seed(0))

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return Pair(self.x[i], self.x[i].flip(0), i)


def test_resume_map_style_from_explicit_path(tmp_path):
    def model():
        torch.manual_seed(0)
        encoder = torch.nn.Linear(6, 4)
        return methods.clip(encoder, encoder, 0.1, learnable=False)

    full = model()
    Trainer(full, Deterministic(), config(tmp_path / "full", batch_size=6)).fit()
    ckpt = checkpoint_dir(tmp_path / "full" / "checkpoints", 9)
    resumed = model()
    Trainer(resumed, Deterministic(), config(tmp_path / "r", batch_size=6, resume=str(ckpt))).fit()
    for name, value in full.state_dict().items():
        assert torch.equal(value, resumed.state_dict()[name]), name


def test_checkpoints_are_atomic_and_pruned(tmp_path):
    model = make_model()
    Trainer(model, AffineViewPairs(images()), config(tmp_path, keep_checkpoints=2)).fit()
    root = tmp_path / "checkpoints"
    assert [p.name for p in list_checkpoints(root)] == ["step-000000014", "step-000000015"]
    # a half-written checkpoint (crash mid-write) is invisible to resume
    (root / ".step-000000016.tmp").mkdir()
    (root / "step-000000017").mkdir()  # no state.pt: incomplete
    assert latest_checkpoint(root).name == "step-000000015"
    assert not any(p.name.endswith(".partial") for p in root.rglob("*"))


def test_resume_from_missing_path_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        Trainer(
            make_model(), AffineViewPairs(images()), config(tmp_path, resume=str(tmp_path / "nope"))
        ).fit()
