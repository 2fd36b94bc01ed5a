"""Bad input meets a clear error naming the problem."""

import math

import pytest
import torch

from multicon import (
    BatchKeys,
    BatchPairGenerator,
    MapPairGenerator,
    NonFiniteLossError,
    Pair,
    PairBatch,
    TrainConfig,
    Trainer,
    latest_checkpoint,
    methods,
)
from multicon.keys import KeyQueue, StepInputs, View, batch_keyset


def symmetric(encoder):
    """Symmetric in-batch InfoNCE with one encoder."""
    return methods.clip(encoder, encoder, 0.1, learnable=False)


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
    with pytest.raises(ValueError, match="embed to 8 and 6"):  # told when the model is built
        methods.clip(torch.nn.Linear(4, 8), torch.nn.Linear(4, 6))
    image, text = torch.nn.Sequential(torch.nn.Linear(4, 8)), torch.nn.Linear(4, 6)
    image.out_dim = None  # an encoder that does not say: caught at the first step
    model = methods.clip(image, text)
    with pytest.raises(ValueError, match=r"keys must be \(N, 8\).*got \(5, 6\)"):
        model(PairBatch(torch.randn(5, 4), torch.randn(5, 4), torch.arange(5)))


def test_key_id_must_be_integer_vector():
    with pytest.raises(ValueError, match="key_id must be a 1-d integer tensor"):
        PairBatch(torch.zeros(2, 2), torch.zeros(2, 2), torch.zeros(2))


def test_batch_of_one_with_in_batch_negatives():
    with pytest.raises(ValueError, match="at least 2 pairs"):
        batch_keyset(torch.randn(1, 8), torch.arange(1))


def test_queue_dim_differs_from_key_dim():
    with pytest.raises(ValueError, match="dim 8 does not match the fill encoder's output size 6"):
        KeyQueue(BatchKeys(torch.nn.Linear(4, 6)), 16, dim=8)
    queue = KeyQueue(BatchKeys(torch.nn.Identity()), 16, dim=8)  # an encoder that does not say
    x = torch.randn(4, 6)
    with pytest.raises(ValueError, match="queue holds keys of dim 8"):
        queue(View(StepInputs(PairBatch(x, x, torch.arange(4))), reverse=False))
    with pytest.raises(ValueError, match="dim 8"):
        queue.enqueue(torch.randn(4, 6), torch.arange(4))


def test_queue_smaller_than_batch():
    queue = KeyQueue(BatchKeys(torch.nn.Identity()), 4, 2)
    with pytest.raises(ValueError, match="queue_size 4 is smaller than the global batch of 8"):
        queue.enqueue(torch.randn(8, 2), torch.arange(8))


class Empty(BatchPairGenerator):
    def num_pairs(self):
        return 0

    def batches(self, batch_size, *, epoch, device, rank=0, world_size=1):
        yield from ()


def test_empty_generator(tmp_path):
    model = symmetric(torch.nn.Linear(2, 2))
    with pytest.raises(ValueError, match="has no pairs"):
        Trainer(model, Empty(), config(tmp_path)).fit()


class Few(MapPairGenerator):
    def __len__(self):
        return 3

    def __getitem__(self, i):
        return Pair(torch.randn(2), torch.randn(2), i)


def test_batch_larger_than_dataset(tmp_path):
    with pytest.raises(ValueError, match="larger than the dataset of 3 pairs"):
        Trainer(symmetric(torch.nn.Linear(2, 2)), Few(), config(tmp_path)).fit()


def test_not_a_pair_generator(tmp_path):
    with pytest.raises(TypeError, match="MapPairGenerator or a BatchPairGenerator"):
        Trainer(symmetric(torch.nn.Linear(2, 2)), [1, 2, 3], config(tmp_path))


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
    model = symmetric(torch.nn.Linear(4, 4))
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
