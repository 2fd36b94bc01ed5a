"""GradCache (`GradCacheStep`): the full batch's gradients from chunks, in float64.

Each test runs the same steps with the plain `AutogradStep` and with `GradCacheStep` on copies
of one model and compares every gradient, parameter and buffer (queues, momentum copies).
"""

from __future__ import annotations

import copy
import warnings
from contextlib import nullcontext
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
from test_distributed import run_two_processes
from test_process_equivalence import (
    CONFIGS,
    B,
    assert_resume_equals_uninterrupted_run,
    write_caption_data,
)
from torch import nn

from multicon import PairBatch, TrainConfig, Trainer, methods
from multicon.steps import AutogradStep, GradCacheStep, StepContext, step_for
from multicon.steps.grad_cache import average_gradients

DIM_IN, DIM = 6, 8


class Accelerator:
    """What a step uses of Accelerate's, for one process or a gloo group (no DDP wrapper:
    GradCache runs the model unwrapped and averages the gradients itself)."""

    def __init__(self) -> None:
        self.num_processes = dist.get_world_size() if dist.is_initialized() else 1

    def autocast(self):
        return nullcontext()

    def backward(self, loss: torch.Tensor) -> None:
        loss.backward()


class Recorder(torch.optim.SGD):
    """SGD that keeps a copy of each step's gradients."""

    def __init__(self, model: nn.Module) -> None:
        self.names = {p: n for n, p in model.named_parameters()}
        super().__init__(model.parameters(), lr=0.05)
        self.grads: list[dict[str, torch.Tensor]] = []

    def step(self, closure=None):
        self.grads.append({self.names[p]: p.grad.clone() for p in self.names if p.grad is not None})
        return super().step(closure)


def run_steps(model, step, batches: list[PairBatch]):
    """Train ``batches`` with ``step``; the gradients of each step and the final state."""
    opt = Recorder(model)
    ctx = StepContext(Accelerator(), model, model, opt, 0.05, 0.0, lambda loss: None)
    model.train()
    for i, batch in enumerate(batches):
        out = step(batch, ctx)
        step.after_step(out, ctx, (i + 1) / len(batches), False)
    return opt.grads, {k: v.clone() for k, v in model.state_dict().items()}


def mlp(dropout: float = 0.0, norm: type | None = None) -> nn.Module:
    layers = [nn.Linear(DIM_IN, 16)]
    if norm is nn.GroupNorm:
        layers.append(nn.GroupNorm(4, 16))
    elif norm is not None:
        layers.append(norm(16))
    layers += [nn.ReLU(), nn.Dropout(dropout), nn.Linear(16, DIM)]
    return nn.Sequential(*layers).double()


def batches(n: int, steps: int = 3, seed: int = 0) -> list[PairBatch]:
    g = torch.Generator().manual_seed(seed)
    out = []
    for s in range(steps):
        x = torch.randn(n, DIM_IN, generator=g, dtype=torch.float64)
        key = x + 0.1 * torch.randn(n, DIM_IN, generator=g, dtype=torch.float64)
        out.append(PairBatch(x, key, torch.arange(s * n, (s + 1) * n)))
    return out


METHODS = {
    "simclr": lambda: methods.simclr(mlp(), temperature=0.5),
    "clip": lambda: methods.clip(mlp(), mlp(), temperature=0.1, learnable=True),
    "moco_v2": lambda: methods.moco_v2(mlp(), 24, DIM, momentum=0.9, temperature=0.2),
    "albef": lambda: methods.albef(mlp(), mlp(), 24, DIM, momentum=0.9, distill=0.4),
    "moco_v3": lambda: methods.moco_v3(
        mlp(), nn.Sequential(nn.Linear(DIM, 16), nn.ReLU(), nn.Linear(16, DIM)).double(), 0.9
    ),
}

if hasattr(methods, "siglip"):  # issue 21 §2 (its branch): the sigmoid loss, a learned bias
    METHODS["siglip"] = lambda: methods.siglip(mlp(), mlp())


def assert_same(a, b, rtol: float = 1e-9) -> None:
    grads_a, state_a = a
    grads_b, state_b = b
    assert len(grads_a) == len(grads_b)
    for ga, gb in zip(grads_a, grads_b, strict=True):
        assert ga.keys() == gb.keys() and ga
        for name in ga:
            torch.testing.assert_close(gb[name], ga[name], rtol=rtol, atol=1e-12, msg=name)
    assert state_a.keys() == state_b.keys()
    for name in state_a:
        torch.testing.assert_close(state_b[name], state_a[name], rtol=rtol, atol=1e-12, msg=name)


@pytest.mark.parametrize("name", list(METHODS))
@pytest.mark.parametrize("chunk", [3, 4])  # 3 leaves a remainder chunk of 1 in batches of 10
def test_grad_cache_equals_the_full_batch_step(name, chunk):
    torch.manual_seed(0)
    model = METHODS[name]().double()
    data = batches(10)  # three steps: the queues hold keys from the second step on
    plain = run_steps(copy.deepcopy(model), AutogradStep(), data)
    cached = run_steps(copy.deepcopy(model), GradCacheStep(chunk), data)
    assert_same(plain, cached)
    if name == "clip":  # the learnable temperature got its gradient
        assert any("logit_scale" in n for n in plain[0][0])


class Chunked(nn.Module):
    """An encoder called chunk by chunk with its graph: the plain step then draws the dropout
    masks GradCache's first pass draws."""

    def __init__(self, encoder: nn.Module, chunk: int) -> None:
        super().__init__()
        self.encoder, self.chunk = encoder, chunk

    def forward(self, x):
        return torch.cat([self.encoder(part) for part in x.split(self.chunk)])


def per_chunk_reference(encoder: nn.Module, chunk: int, data, seed: int = 1):
    """The plain step with ``encoder`` called chunk by chunk, keys renamed as the bare
    encoder's; and the RNG state it ends in."""
    torch.manual_seed(seed)
    model = methods.simclr(Chunked(copy.deepcopy(encoder), chunk)).double()
    grads, state = run_steps(model, AutogradStep(), data)

    def bare(name: str) -> str:
        return name.replace(".encoder.", ".", 1)

    grads = [{bare(k): v for k, v in g.items()} for g in grads]
    return (grads, {bare(k): v for k, v in state.items()}), torch.get_rng_state()


def test_dropout_masks_are_replayed_in_the_rerun():
    torch.manual_seed(0)
    encoder = mlp(dropout=0.5)
    data = batches(10)
    plain, rng_plain = per_chunk_reference(encoder, 4, data)
    torch.manual_seed(1)
    cached = run_steps(methods.simclr(copy.deepcopy(encoder)).double(), GradCacheStep(4), data)
    assert_same(plain, cached)
    # the re-run leaves the RNG where the first pass left it: the next draws are the same
    assert torch.equal(torch.get_rng_state(), rng_plain)


def test_batchnorm_is_the_plain_step_over_chunks_and_its_statistics_move_once():
    """With BatchNorm, GradCache equals the plain step whose encoder normalises each chunk by
    its own statistics; the re-run does not update the running statistics a second time."""
    torch.manual_seed(0)
    encoder = mlp(norm=nn.BatchNorm1d)
    data = batches(10)
    plain, _ = per_chunk_reference(encoder, 4, data)
    torch.manual_seed(1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cached = run_steps(methods.simclr(copy.deepcopy(encoder)).double(), GradCacheStep(4), data)
    assert_same(plain, cached)
    assert any("running_mean" in k for k in cached[1])


def test_batchnorm_warns_naming_the_module_and_norm_layers_are_exact():
    torch.manual_seed(0)
    with pytest.warns(UserWarning, match=r"1 use BatchNorm.*per chunk of 4"):
        run_steps(methods.simclr(mlp(norm=nn.BatchNorm1d)), GradCacheStep(4), batches(10, 1))
    for norm in (nn.LayerNorm, nn.GroupNorm):
        model = methods.simclr(mlp(norm=norm))
        data = batches(10, 2)
        plain = run_steps(copy.deepcopy(model), AutogradStep(), data)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            cached = run_steps(copy.deepcopy(model), GradCacheStep(4), data)
        assert_same(plain, cached)


def test_bad_chunks_are_refused_naming_the_flag(tmp_path):
    with pytest.raises(ValueError, match="--grad_cache_chunk must be >= 0"):
        step_for(-1, 8)
    with pytest.raises(ValueError, match="--grad_cache_chunk 16 is larger than the per-process"):
        step_for(16, 8)
    with pytest.raises(ValueError, match="grad_cache_chunk"):
        GradCacheStep(0)
    config = TrainConfig(output_dir=str(tmp_path), batch_size=8, log_with="", progress_bar=False)
    pairs = CONFIGS["custom"](tmp_path, 1)[1]
    with pytest.raises(ValueError, match="grad_cache_chunk 9 is larger than the per-process"):
        Trainer(methods.simclr(mlp()), pairs, config, step=GradCacheStep(9))


# -- two gloo processes, each chunking its share ---------------------------------------------
def _two_process_worker(rank: int, out: str) -> None:
    import torch.distributed.nn.functional  # noqa: F401  (before the group: see test_distributed)

    dist.init_process_group("gloo")
    calls = []
    all_reduce = dist.all_reduce

    def counted(*args, **kwargs):
        calls.append(1)
        return all_reduce(*args, **kwargs)

    dist.all_reduce = counted
    results = {}
    for name in ("clip", "moco_v2"):
        torch.manual_seed(0)
        model = METHODS[name]().double()
        share = [_rows(b, rank * 5, 5) for b in batches(10)]  # each process: 5 of 10 pairs
        for chunk in (5, 2):  # one chunk, then 2 + 2 + 1
            calls.clear()
            results[(name, chunk)] = run_steps(copy.deepcopy(model), GradCacheStep(chunk), share)
            results[(name, chunk, "all_reduce")] = len(calls)
        results[(name, "plain")] = run_steps(copy.deepcopy(model), AveragedAutograd(), share)
    dist.all_reduce = all_reduce
    # the trainer's path: the model wrapped in DDP, run unwrapped by the step, B pairs a process
    results["trainer"] = _train_moco(Path(out) / "trainer", GradCacheStep(3), B)
    if rank == 0:
        torch.save(results, f"{out}/two.pt")


def _train_moco(out: Path, step, batch_size: int) -> dict[str, torch.Tensor]:
    """The MoCo v2 recipe's configuration (CPU views) trained by the `Trainer`."""
    torch.manual_seed(0)
    model, pairs, training = CONFIGS["moco_v2"](out, 1)
    config = TrainConfig(
        output_dir=str(out),
        batch_size=batch_size,
        log_with="",
        progress_bar=False,
        eval_every=0,
        **training,
    )
    Trainer(model.double(), pairs, config, step=step).fit()
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


class AveragedAutograd(AutogradStep):
    """The plain step with the gradients averaged over processes, as DDP averages them."""

    def update(self, ctx: StepContext) -> None:
        average_gradients(list(ctx.model.parameters()), dist.get_world_size())
        AutogradStep.update(ctx)


def _rows(batch: PairBatch, start: int, n: int) -> PairBatch:
    rows = slice(start, start + n)
    return PairBatch(batch.query[rows], batch.key[rows], batch.key_id[rows])


def test_two_processes_with_grad_cache_equal_one_full_batch(tmp_path):
    run_two_processes(_two_process_worker, str(tmp_path))
    two = torch.load(tmp_path / "two.pt", weights_only=False)
    for name in ("clip", "moco_v2"):
        assert_same(two[(name, "plain")], two[(name, 2)])
        # and one process's full batch, to the float32 rounding that one and two processes
        # differ by in the plain step (the learnable temperature's gradient)
        torch.manual_seed(0)
        one = run_steps(METHODS[name]().double(), AutogradStep(), batches(10))
        assert_same(one, two[(name, 2)], rtol=1e-6)
        # the gradients are averaged once a step, however many chunks
        assert two[(name, 2, "all_reduce")] == two[(name, 5, "all_reduce")]
    one = _train_moco(tmp_path / "one", AutogradStep(), 2 * B)
    assert one.keys() == two["trainer"].keys()
    for key, value in one.items():
        torch.testing.assert_close(two["trainer"][key], value, rtol=1e-6, atol=1e-12, msg=key)


# -- exact resume with GradCache (issue 21 §3) -----------------------------------------------
@pytest.fixture(scope="module")
def caption_data(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("grad-cache-captions")
    write_caption_data(folder)
    return folder


@pytest.mark.parametrize("name", ["clip", "moco_v2"])  # the caption recipe; images, CPU views
def test_resume_with_grad_cache_equals_uninterrupted_run(name, caption_data, tmp_path):
    assert_resume_equals_uninterrupted_run(
        name, caption_data, tmp_path, make_step=lambda: GradCacheStep(3)
    )


# -- the recipes' flag -------------------------------------------------------------------------
def _recipe(name: str):
    import importlib

    return importlib.import_module(f"multicon.recipes.{name}")


@pytest.mark.parametrize("recipe", ["simclr", "moco", "clip"])
def test_recipes_refuse_bad_chunks_before_any_work(recipe, tmp_path):
    main = _recipe(recipe).main
    base = ["--output_dir", str(tmp_path / "out"), "--batch_size", "16"]
    if recipe != "clip":  # no data there: the flag is refused before it is read
        base += ["--data", str(tmp_path / "missing")]
    else:
        base += ["--train_data", str(tmp_path / "missing.jsonl")]
    with pytest.raises(ValueError, match="--grad_cache_chunk 32 is larger than the per-process"):
        main([*base, "--grad_cache_chunk", "32"])
    with pytest.raises(ValueError, match="--grad_cache_chunk must be >= 0"):
        main([*base, "--grad_cache_chunk", "-1"])


@pytest.mark.parametrize("kernel", ["fused", "torch"])
def test_word2vec_recipe_refuses_grad_cache_on_the_fused_step(kernel, tmp_path):
    main = _recipe("word2vec").main
    argv = ["--corpus", str(tmp_path / "missing.txt"), "--output_dir", str(tmp_path / "o")]
    argv += ["--kernel", kernel, "--grad_cache_chunk", "64"]
    if kernel == "fused":
        with pytest.raises(ValueError, match="--grad_cache_chunk 64: the fused kernel"):
            main(argv)
    else:  # the torch kernel takes it: the run goes on to read the (missing) corpus
        with pytest.raises(FileNotFoundError):
            main(argv)


class _Stop(Exception):
    pass


def test_image_recipe_trains_with_the_grad_cache_step(tmp_path, monkeypatch):
    from textures import texture_images, write_image_folder

    import multicon.image_recipe

    def trainer(model, pairs, config, *, step, evaluate):
        raise _Stop(step)

    monkeypatch.setattr(multicon.image_recipe, "Trainer", trainer)
    write_image_folder(tmp_path / "data" / "train", texture_images(4, size=16, seed=0))
    write_image_folder(tmp_path / "data" / "test", texture_images(2, size=16, seed=1))
    argv = ["--data", str(tmp_path / "data"), "--output_dir", str(tmp_path / "out")]
    argv += ["--batch_size", "8", "--head_hidden_dim", "16", "--grad_cache_chunk", "3"]
    with pytest.raises(_Stop) as stopped:
        _recipe("moco").main(argv)
    step = stopped.value.args[0]
    assert isinstance(step, GradCacheStep) and step.chunk == 3
