import json

import pytest
import torch

from multicon import (
    AffineViewPairs,
    TrainConfig,
    Trainer,
    latest_checkpoint,
    methods,
)


def small_model():
    torch.manual_seed(0)
    encoder = torch.nn.Sequential(
        torch.nn.Flatten(), torch.nn.Linear(64, 32), torch.nn.ReLU(), torch.nn.Linear(32, 16)
    )
    return methods.clip(encoder, encoder, 0.2, learnable=True)  # one encoder, both views


@pytest.mark.parametrize(
    "optimizer,precision,clip",
    [("adamw", "no", 0.0), ("sgd", "bf16", 1.0), ("lars", "no", 0.5)],
)
def test_optimizers_and_precisions_train(tmp_path, optimizer, precision, clip):
    model = small_model()
    before = [p.detach().clone() for p in model.parameters()]
    config = TrainConfig(
        output_dir=str(tmp_path),
        epochs=2,
        batch_size=16,
        optimizer=optimizer,
        lr=0.05 if optimizer != "adamw" else 1e-3,
        mixed_precision=precision,
        grad_clip=clip,
        warmup_steps=2,
        log_every=1,
        log_with="jsonl",
        progress_bar=False,
    )
    result = Trainer(model, AffineViewPairs(torch.rand(64, 1, 8, 8)), config).fit()
    assert result.global_step == 8
    assert all(torch.isfinite(torch.tensor(h["loss"])) for h in result.history if "loss" in h)
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in records if "train/loss" in r]
    assert [r["step"] for r in train] == list(range(1, 9))
    assert {"train/lr", "train/samples_per_s", "train/temperature"} <= train[0].keys()
    assert train[-1]["train/lr"] == pytest.approx(0.0, abs=1e-12)  # cosine ends at 0


def test_tensorboard_events_are_written(tmp_path):
    config = TrainConfig(
        output_dir=str(tmp_path),
        epochs=1,
        batch_size=16,
        log_every=1,
        log_with="tensorboard",
        progress_bar=False,
    )
    Trainer(small_model(), AffineViewPairs(torch.rand(32, 1, 8, 8)), config).fit()
    assert list(tmp_path.rglob("events.out.tfevents.*"))


def test_max_steps_stops_mid_epoch_and_can_continue(tmp_path):
    pairs = AffineViewPairs(torch.rand(64, 1, 8, 8))
    config = TrainConfig(
        output_dir=str(tmp_path),
        epochs=5,
        max_steps=6,
        batch_size=16,
        log_with="",
        progress_bar=False,
        eval_every=0,
    )
    result = Trainer(small_model(), pairs, config).fit()
    assert result.global_step == 6
    state = torch.load(latest_checkpoint(tmp_path / "checkpoints") / "state.pt", weights_only=True)
    assert state["position"] == {"epoch": 1, "step_in_epoch": 2, "global_step": 6}


def test_adamw_is_torchs_fused_kernel_with_the_loop_kernels_steps():
    """build_optimizer's AdamW takes torch's fused kernel on the CPU (one pass per tensor, not
    the loop's ten), and its steps are the loop's to float rounding."""
    from multicon.optim import build_optimizer, parameter_groups

    models = [small_model(), small_model()]
    fused = build_optimizer(models[0], "adamw", 1e-2, weight_decay=0.05)
    loop = torch.optim.AdamW(parameter_groups(models[1], 0.05), lr=1e-2)
    assert all(g["fused"] for g in fused.param_groups)
    assert not any(g["fused"] for g in loop.param_groups)
    x = torch.randn(8, 64)
    for _ in range(3):
        for model, opt in zip(models, (fused, loop), strict=True):
            z = model.directions[0].query(x)
            (z.square().mean() + model.loss.log_logit_scale).backward()
            opt.step()
            opt.zero_grad()
    for a, b in zip(models[0].parameters(), models[1].parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
