"""Bad input meets a clear error naming the problem."""

import math

import pytest
import torch

from multicon import (
    BatchPairGenerator,
    ContrastiveModel,
    InBatchNegatives,
    MapPairGenerator,
    MomentumQueue,
    NonFiniteLossError,
    Pair,
    PairBatch,
    TrainConfig,
    Trainer,
    latest_checkpoint,
)


def config(tmp_path, **kw):
    base = dict(
        output_dir=str(tmp_path),
        epochs=1,
        batch_size=4,
        log_with="",
        progress_bar=False,
        eval_every=0,
    )
    return TrainConfig(**{**base, **kw})


def test_mismatched_query_and_key_batch_sizes():
    with pytest.raises(ValueError, match="disagree on batch size: 4, 3, 4"):
        PairBatch(torch.zeros(4, 2), torch.zeros(3, 2), torch.arange(4))


def test_mismatched_query_and_key_embedding_shapes():
    model = ContrastiveModel(torch.nn.Linear(4, 8), torch.nn.Linear(4, 6), symmetric=True)
    with pytest.raises(ValueError, match=r"same shape, got \(5, 8\) and \(5, 6\)"):
        model(PairBatch(torch.randn(5, 4), torch.randn(5, 4), torch.arange(5)))


def test_key_id_must_be_integer_vector():
    with pytest.raises(ValueError, match="key_id must be a 1-d integer tensor"):
        PairBatch(torch.zeros(2, 2), torch.zeros(2, 2), torch.zeros(2))


def test_batch_of_one_with_in_batch_negatives():
    with pytest.raises(ValueError, match="at least 2 pairs"):
        InBatchNegatives()(torch.randn(1, 8), torch.arange(1))


def test_queue_dim_differs_from_key_dim():
    queue = MomentumQueue(16, dim=8)
    with pytest.raises(ValueError, match="dim 8 but got keys of shape"):
        queue(torch.randn(4, 6), torch.arange(4))
    with pytest.raises(ValueError, match="dim 8"):
        queue.update(torch.randn(4, 6), torch.arange(4))


def test_queue_smaller_than_batch():
    with pytest.raises(ValueError, match="smaller than the global batch"):
        MomentumQueue(4, 2).update(torch.randn(8, 2), torch.arange(8))


class Empty(BatchPairGenerator):
    def num_pairs(self):
        return 0

    def batches(self, batch_size, *, epoch, device, rank=0, world_size=1):
        yield from ()


def test_empty_generator(tmp_path):
    model = ContrastiveModel(torch.nn.Linear(2, 2))
    with pytest.raises(ValueError, match="has no pairs"):
        Trainer(model, Empty(), config(tmp_path)).fit()


class Few(MapPairGenerator):
    def __len__(self):
        return 3

    def __getitem__(self, i):
        return Pair(torch.randn(2), torch.randn(2), i)


def test_batch_larger_than_dataset(tmp_path):
    with pytest.raises(ValueError, match="larger than the dataset of 3 pairs"):
        Trainer(ContrastiveModel(torch.nn.Linear(2, 2)), Few(), config(tmp_path)).fit()


def test_not_a_pair_generator(tmp_path):
    with pytest.raises(TypeError, match="MapPairGenerator or a BatchPairGenerator"):
        Trainer(ContrastiveModel(torch.nn.Linear(2, 2)), [1, 2, 3], config(tmp_path))


class Blowup(BatchPairGenerator):
    """Finite for 3 steps, then inputs of inf make the loss NaN."""

    def num_pairs(self):
        return 40

    def batches(self, batch_size, *, epoch, device, rank=0, world_size=1):
        for step in range(self.num_batches(batch_size)):
            x = torch.randn(batch_size, 4)
            if epoch == 1 and step == 3:
                x[0, 0] = math.inf
            yield PairBatch(x, x + 0.1, torch.arange(batch_size))


@pytest.mark.parametrize("deferred", [False, True], ids=["cpu", "deferred-as-on-a-gpu"])
def test_nan_loss_stops_with_clear_message_and_keeps_last_good_checkpoint(tmp_path, deferred):
    """On an accelerator the check is read only at logged steps, evaluations and checkpoints
    (no host sync a step): the error still names the first bad step, and no checkpoint is
    written after it (here it surfaces at step 20's end-of-epoch checkpoint)."""
    model = ContrastiveModel(torch.nn.Linear(4, 4), symmetric=True)
    trainer = Trainer(model, Blowup(), config(tmp_path, epochs=3, log_every=1000))
    trainer._defer_finite_check = deferred
    with pytest.raises(NonFiniteLossError, match=r"loss is nan at step 14 \(epoch 2\)") as err:
        trainer.fit()
    last = latest_checkpoint(tmp_path / "checkpoints")
    assert last is not None and last.name == "step-000000010"
    assert str(last) in str(err.value)
    state = torch.load(last / "state.pt", weights_only=True)
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())


def test_bad_config_values():
    with pytest.raises(ValueError, match="batch_size must be at least 1"):
        TrainConfig(batch_size=0)
    with pytest.raises(ValueError, match="lr must be positive"):
        TrainConfig(lr=0)
