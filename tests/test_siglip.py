"""SigLIP (Zhai et al. 2023): the paper's loss, one process = two, and the inputs it refuses."""

from __future__ import annotations

import math

import pytest
import torch
import torch.distributed as dist
import torch.nn.functional as F
from test_distributed import run_two_processes

from multicon import ContrastiveModel, Direction, PairBatch, methods
from multicon.encoders.dual_args import DualEncoderArgs
from multicon.false_negatives import RelatedIds
from multicon.keys import BatchKeys, KeyQueue, MomentumEncoder
from multicon.losses import SigmoidLoss
from multicon.recipes import clip as clip_recipe


def paper_loss(img_emb, txt_emb, t_prime, b, keep=None):
    """The paper's pseudocode (Fig. 1), in float64; ``keep``: pairs scored (default all)."""
    n = len(img_emb)
    zimg = img_emb / img_emb.norm(dim=1, keepdim=True)
    ztxt = txt_emb / txt_emb.norm(dim=1, keepdim=True)
    logits = zimg @ ztxt.T * t_prime.exp() + b
    labels = 2 * torch.eye(n, dtype=logits.dtype) - 1
    terms = F.logsigmoid(labels * logits)
    if keep is not None:
        terms = terms * keep
    return -terms.sum() / n


def leaves(n: int = 6, d: int = 5, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g, dtype=torch.float64, requires_grad=True)
    y = torch.randn(n, d, generator=g, dtype=torch.float64, requires_grad=True)
    return x, y


def library_loss_and_grads(x, y, t: float, b: float, related=None):
    model = methods.siglip(torch.nn.Identity(), torch.nn.Identity(), t, b, related=related)
    model.double()
    with torch.no_grad():  # exact float64 values, not float32's rounding of log t
        model.loss.log_logit_scale.fill_(math.log(t))
    loss = model(PairBatch(x, y, torch.arange(len(x)))).loss
    params = (model.loss.log_logit_scale, model.loss.logit_bias)
    grads = torch.autograd.grad(loss, (x, y, *params))
    return loss, grads


@pytest.mark.parametrize("t, b", [(10.0, -10.0), (3.0, -1.5)])
def test_loss_and_gradients_equal_the_papers_pseudocode_in_float64(t, b):
    x, y = leaves()
    loss, grads = library_loss_and_grads(x, y, t, b)
    t_prime = torch.tensor(math.log(t), dtype=torch.float64, requires_grad=True)
    bias = torch.tensor(b, dtype=torch.float64, requires_grad=True)
    ref = paper_loss(x, y, t_prime, bias)
    ref_grads = torch.autograd.grad(ref, (x, y, t_prime, bias))
    assert loss.item() == pytest.approx(ref.item(), rel=1e-12)
    for name, got, want in zip(("image", "text", "t'", "b"), grads, ref_grads, strict=True):
        assert torch.allclose(got.double(), want, rtol=1e-6, atol=1e-12), name


def test_a_related_pair_is_left_out_of_the_loss():
    """A false negative (`RelatedIds`) is neither a positive nor a negative: its term goes."""
    x, y = leaves(n=4)
    related = RelatedIds([[2], [], [0], []])  # images 0 and 2 share a scene
    loss, _ = library_loss_and_grads(x, y, 3.0, -1.5, related=related)
    keep = torch.ones(4, 4, dtype=torch.float64)
    keep[0, 2] = keep[2, 0] = 0
    t_prime = torch.tensor(math.log(3.0), dtype=torch.float64)
    want = paper_loss(x, y, t_prime, torch.tensor(-1.5, dtype=torch.float64), keep)
    assert loss.item() == pytest.approx(want.item(), rel=1e-12)


def test_scale_and_bias_learn_and_the_scale_is_clamped():
    model = methods.siglip(torch.nn.Linear(4, 3), torch.nn.Linear(2, 3))
    loss = model.loss
    assert [n for n, _ in loss.named_parameters()] == ["log_logit_scale", "logit_bias"]
    assert loss.logit_scale().item() == pytest.approx(10.0)
    assert loss.logit_bias.item() == pytest.approx(-10.0)
    with torch.no_grad():
        loss.log_logit_scale.fill_(math.log(1e4))
    assert loss.logit_scale().item() == pytest.approx(100.0)
    fixed = methods.siglip(torch.nn.Linear(4, 3), torch.nn.Linear(2, 3), learnable=False)
    assert not list(fixed.loss.parameters())


def _two_process_worker(rank: int, out: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{out}/store", rank=rank, world_size=2)
    model = _model()
    ddp = torch.nn.parallel.DistributedDataParallel(model)
    full = _batch()
    half = slice(rank * 4, rank * 4 + 4)
    loss = ddp(PairBatch(full.query[half], full.key[half], full.key_id[half])).loss
    loss.backward()  # DDP averages the gradients of the two ranks
    mean_loss = loss.detach().clone()
    dist.all_reduce(mean_loss)
    grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    torch.save({"loss": mean_loss / 2, "grads": grads}, f"{out}/rank{rank}.pt")


def _model() -> ContrastiveModel:
    torch.manual_seed(0)
    model = methods.siglip(torch.nn.Linear(6, 5), torch.nn.Linear(4, 5), 3.0, -2.0)
    return model.double()


def _batch() -> PairBatch:
    g = torch.Generator().manual_seed(1)
    query = torch.randn(8, 6, generator=g, dtype=torch.float64)
    key = torch.randn(8, 4, generator=g, dtype=torch.float64)
    return PairBatch(query, key, torch.arange(8))


def test_two_processes_score_all_pairs_of_the_global_batch(tmp_path):
    """Each process scores its 4 images against all 8 gathered captions; the mean over its
    images, averaged by DDP, is the paper's -Σ/8 over the 8 × 8 pairs: the loss and every
    gradient (towers, t', b) equal one process with all 8 pairs."""
    model = _model()
    loss = model(_batch()).loss
    loss.backward()
    grads = {n: p.grad for n, p in model.named_parameters()}
    run_two_processes(_two_process_worker, str(tmp_path))
    for rank in range(2):
        got = torch.load(tmp_path / f"rank{rank}.pt")
        assert got["loss"].item() == pytest.approx(loss.item(), rel=1e-6)
        for name, g in grads.items():
            assert torch.allclose(got["grads"][name], g, rtol=1e-6, atol=1e-12), name


@pytest.mark.parametrize(
    "flags, named",
    [
        ({"queue_size": 64}, "--queue_size 64"),
        ({"queue_size": 64, "feature_queues": True}, "--feature_queues True"),
        ({"queue_size": 64, "distill": 0.4}, "--distill 0.4"),
        ({"queue_size": 64, "online_batch_keys": True}, "--online_batch_keys True"),
    ],
)
def test_siglip_with_a_queue_is_refused_naming_the_flags(flags, named):
    with pytest.raises(ValueError, match=f"--loss siglip .*{named}"):
        DualEncoderArgs(loss="siglip", **flags)
    DualEncoderArgs(loss="infonce", **flags)  # the same flags are fine with InfoNCE


def test_the_recipe_refuses_siglip_with_a_queue_before_training(tmp_path):

    out = tmp_path / "run"
    recipe = clip_recipe
    data = ["--train_data", str(tmp_path / "none.jsonl"), "--output_dir", str(out)]
    with pytest.raises(ValueError, match="--queue_size 512"):
        recipe.main(["--loss", "siglip", "--queue_size", "512", *data])
    assert not out.exists()  # refused at the flags: no run folder, no data read
    with pytest.raises(ValueError, match="--loss must be one of infonce, siglip"):
        recipe.main(["--loss", "sigmoid", *data])


def test_each_loss_starts_from_its_own_temperature():
    assert DualEncoderArgs().temperature == 0.07
    assert DualEncoderArgs(loss="siglip").temperature == 0.1  # t = 10
    assert DualEncoderArgs(loss="siglip", temperature=0.2).temperature == 0.2


def test_towers_of_different_sizes_are_refused():
    with pytest.raises(ValueError, match="embed to 8 and 6"):
        methods.siglip(torch.nn.Linear(4, 8), torch.nn.Linear(3, 6))


def test_the_sigmoid_loss_refuses_keys_it_cannot_learn_from():
    image, text = torch.nn.Linear(4, 3), torch.nn.Linear(2, 3)
    biased = SigmoidLoss(logit_scale=10.0, bias=-10.0, learnable=True, normalize=True)
    ContrastiveModel([Direction(image, BatchKeys(text))], biased)  # SigLIP: allowed
    with pytest.raises(ValueError, match="without a bias does not learn"):
        ContrastiveModel([Direction(image, BatchKeys(text))], SigmoidLoss(normalize=True))
    queue = KeyQueue(BatchKeys(text), 16, 3)
    with pytest.raises(ValueError, match="not KeyQueue keys"):
        ContrastiveModel([Direction(image, queue)], biased)
    momentum = BatchKeys(MomentumEncoder(text, 0.99))
    with pytest.raises(ValueError, match="not BatchKeys keys"):
        ContrastiveModel([Direction(image, momentum)], biased)


def test_the_recipe_trains_siglip_and_says_so(tmp_path):
    """`--loss siglip` end to end: the summary and the model card name the loss; the saved
    dual encoder keeps the learned scale as its temperature (1/t)."""
    from caption_fixtures import write_shapes_jsonl
    from test_clip_recipe import SMALL

    train = write_shapes_jsonl(tmp_path, "train", per_concept=1, seed=0)
    test = write_shapes_jsonl(tmp_path, "test", per_concept=1, seed=1)
    out = tmp_path / "run"
    summary = clip_recipe.main(
        ["--train_data", str(train), "--test_data", str(test), "--output_dir", str(out),
         "--loss", "siglip", "--max_steps", "2", "--batch_size", "8", "--show_images", "1",
         "--log_with", "", "--progress_bar", "false", *SMALL]
    )  # fmt: skip
    assert summary["loss"] == "siglip" and summary["steps"] == 2
    assert summary["logit_bias"] != -10.0  # it learned (two AdamW steps move it)
    assert summary["temperature"] == pytest.approx(1 / summary["logit_scale"], rel=1e-3)
    card = (out / "model" / "README.md").read_text()
    assert "siglip" in card and "siglip-captions" in card
