"""Every recipe's own configuration trains to the same parameters on one process with a global
batch of 2B as on two gloo processes with B each (BatchNorm-free encoders; float64).

One pair of processes trains every configuration in turn (a spawn costs seconds); each test then
trains its configuration on this process and compares every tensor of the state dict: parameters
and buffers (queues, their ids and pointers, momentum encoders).

The map-style generators draw their randomness (augmentations, caption choices, noise) from
``(seed, epoch, sample index)``; the last tests check that a run stopped at a checkpoint and
resumed equals the uninterrupted run, with and without DataLoader workers.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
from caption_fixtures import write_shapes_jsonl
from test_distributed import run_two_processes
from torch import nn

from multicon import MapPairGenerator, Pair, TrainConfig, Trainer, methods
from multicon.caption_recipe import build_contrastive_model
from multicon.checkpoint import checkpoint_dir
from multicon.data.captions import CaptionFolder
from multicon.data.corpus import EncodedCorpus
from multicon.encoders.dual import DualEncoder
from multicon.encoders.dual_args import DualEncoderArgs, tower_specs
from multicon.encoders.tokenization import load_tokenizer, train_sentencepiece_tokenizer
from multicon.pairs.captions import CaptionPairs
from multicon.pairs.context import ContextPairs
from multicon.pairs.images import DeviceViewPairs, ViewPairs
from multicon.pairs.views import MoCoV2Views, SimCLRViews, moco_v3_views
from multicon.text import Vocabulary, Word2Vec

B = 4  # pairs per process; one process takes 2B
SIZE = 16  # image side
MAX_LENGTH = 16  # caption tokens


# -- data, identical in every process --------------------------------------------------------
def images() -> torch.Tensor:
    g = torch.Generator().manual_seed(3)
    return torch.randint(0, 256, (16, 3, SIZE, SIZE), generator=g, dtype=torch.uint8)


def write_caption_data(folder: Path) -> None:
    """18 shape images with 4 captions each, and a tokenizer trained on them (saved once, so
    every process loads the same one)."""
    write_shapes_jsonl(folder, "train", per_concept=1, seed=0)
    texts = CaptionFolder(folder / "train.jsonl").flat_captions()[0]
    tokenizer = train_sentencepiece_tokenizer(texts, vocab_size=60, max_length=MAX_LENGTH)
    tokenizer.save_pretrained(str(folder / "tokenizer"))


class Float64(nn.Module):
    """Inputs to float64. The runs compute in float64: float32 rounding differs with the batch
    size a kernel sees, and a few AdamW steps of a transformer carry that to ~3e-6."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.double()


class Mlp(nn.Sequential):
    """A BatchNorm-free image encoder."""

    def __init__(self):
        layers = [nn.Flatten(), nn.Linear(3 * SIZE * SIZE, 32), nn.ReLU(), nn.Linear(32, 16)]
        super().__init__(Float64(), *layers)


class NoisyPairs(MapPairGenerator):
    """A custom map-style generator that draws its noise from torch's global RNG, as the
    docs' examples do."""

    def __init__(self):
        self.x = torch.randn(48, 6, generator=torch.Generator().manual_seed(5))

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> Pair:
        x = self.x[i]
        return Pair(x + 0.3 * torch.randn(6), x.flip(0) + 0.3 * torch.randn(6), i)


# -- the configurations, as their recipes build them --------------------------------------
IMAGE_TRAINING = dict(optimizer="sgd", lr=0.1, weight_decay=5e-4, momentum=0.9, epochs=2)
CAPTION_TRAINING = dict(lr=3e-3, weight_decay=0.05, warmup_steps=2, epochs=2)


def simclr(data: Path, world: int):
    """recipes/simclr_cifar10.py: NT-Xent, device views."""
    model = methods.simclr(Mlp(), temperature=0.5)
    return model, DeviceViewPairs(images(), SimCLRViews(size=SIZE)), IMAGE_TRAINING


def moco_v2(data: Path, world: int):
    """recipes/moco_cifar10.py --version v2 --views_on cpu: own positive + queue."""
    model = methods.moco_v2(Mlp(), 24, 16, momentum=(0.99, 1.0), temperature=0.1)
    return model, ViewPairs(images(), MoCoV2Views(size=SIZE)), IMAGE_TRAINING


def moco_v3(data: Path, world: int):
    """recipes/moco_cifar10.py --version v3: symmetric over the batch's momentum keys, a
    predictor on the query side."""
    predictor = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 16))
    model = methods.moco_v3(Mlp(), predictor, momentum=(0.99, 1.0), temperature=0.2)
    query_views, key_views = moco_v3_views(SIZE)
    return model, DeviceViewPairs(images(), query_views, key_views), IMAGE_TRAINING


def caption_model(data: Path, args: DualEncoderArgs):
    """recipes/clip_captions.py with tiny towers: a ViT (LayerNorm) and a BERT without
    dropout (dropout masks are drawn per process)."""
    tokenizer = load_tokenizer(data / "tokenizer", max_length=MAX_LENGTH)
    image, text = tower_specs(
        args, vocab_size=len(tokenizer), max_length=MAX_LENGTH, pad_token_id=tokenizer.pad_token_id
    )
    text["config"].update(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    dual = DualEncoder.create(
        image,
        text,
        tokenizer=tokenizer,
        embed_dim=args.embed_dim,
        image_size=args.image_size,
        freeze_text=args.freeze_text,
        temperature=args.temperature,
    )
    pairs = CaptionPairs(
        CaptionFolder(data / "train.jsonl"),
        tokenizer,
        transform=nn.Sequential(dual.image_transform(train=True), Float64()),
        max_length=MAX_LENGTH,
    )
    return build_contrastive_model(dual, args), pairs, CAPTION_TRAINING


def tiny_towers(**kw) -> DualEncoderArgs:
    return DualEncoderArgs(
        image_arch="vit",
        image_size=SIZE,
        vit_patch_size=8,
        vit_width=16,
        vit_depth=1,
        vit_heads=2,
        text_width=16,
        text_depth=1,
        text_heads=2,
        embed_dim=8,
        **kw,
    )


def clip(data: Path, world: int):
    return caption_model(data, tiny_towers())


def albef(data: Path, world: int):
    """--queue_size 16 --distill 0.4: momentum towers, two queues, momentum distillation."""
    return caption_model(data, tiny_towers(queue_size=16, distill=0.4))


def feature_queue(data: Path, world: int):
    """--freeze_text --queue_size 16 --feature_queues --momentum_towers false."""
    args = tiny_towers(queue_size=16, feature_queues=True, momentum_towers=False, freeze_text=True)
    return caption_model(data, args)


def word2vec(data: Path, world: int, **kw):
    """recipes/word2vec_text8.py --kernel torch: a summed loss, sampled noise words; sparse
    tables on one process, dense ones under DDP, as the recipe makes them."""
    g = torch.Generator().manual_seed(4)
    vocab_size = 20
    weights = 1.0 / torch.arange(1, vocab_size + 1)
    ids = torch.multinomial(weights, 300, replacement=True, generator=g).int()
    counts = torch.bincount(ids, minlength=vocab_size)
    corpus = EncodedCorpus(ids, torch.arange(0, 301, 15), 300)
    vocab = Vocabulary([f"w{i}" for i in range(vocab_size)], counts)
    torch.manual_seed(0)
    w2v = Word2Vec.from_vocab(vocab, 8, sparse=world == 1)
    w2v.output_embeddings.weight.data.normal_(0, 0.1)  # not zeros: every step moves both tables
    model = methods.sgns(w2v, **kw)
    pairs = ContextPairs(corpus, counts, window=2, sample=1e-2, seed=0)
    training = dict(
        optimizer="sgd", lr=0.05, momentum=0.0, weight_decay=0.0, schedule="linear", epochs=2
    )
    return model, pairs, training


def word2vec_shared(data: Path, world: int):
    """The recipe's default: K noise words shared by groups of pairs. Groups of 3 split the
    global batch of 8 unevenly, across the two processes' halves too."""
    return word2vec(data, world, negative=5, shared_negatives=4, noise_group=3)


def word2vec_exact(data: Path, world: int):
    """--shared_negatives 0: word2vec's own objective, a draw of noise words per pair."""
    return word2vec(data, world, negative=3)


def custom(data: Path, world: int):
    """docs/custom-generators.md: two towers, a learnable temperature, DataLoader workers."""
    model = methods.clip(
        nn.Sequential(Float64(), nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 8)),
        nn.Sequential(Float64(), nn.Linear(6, 8)),
        temperature=0.1,
        learnable=True,
    )
    return model, NoisyPairs(), dict(lr=1e-2, epochs=2, num_workers=2)


CONFIGS: dict[str, Callable] = {
    "simclr": simclr,
    "moco_v2": moco_v2,
    "moco_v3": moco_v3,
    "clip": clip,
    "albef": albef,
    "feature_queue": feature_queue,
    "word2vec_shared": word2vec_shared,
    "word2vec_exact": word2vec_exact,
    "custom": custom,
}


def train(name: str, data: Path, out: Path, batch_size: int) -> dict[str, torch.Tensor]:
    world = dist.get_world_size() if dist.is_initialized() else 1
    torch.manual_seed(0)
    model, pairs, training = CONFIGS[name](data, world)
    config = TrainConfig(
        output_dir=str(out),
        batch_size=batch_size,
        log_with="",
        log_every=1,
        progress_bar=False,
        eval_every=0,
        **training,
    )
    trainer = Trainer(model.double(), pairs, config)
    result = trainer.fit()
    if trainer.accelerator.num_processes != world:
        raise RuntimeError(f"{trainer.accelerator.num_processes} processes, expected {world}")
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    state["__loss__"] = torch.tensor(result.loss)
    return state


def _two_process_worker(rank: int, data: str, out: str) -> None:
    # imported before any process group exists, its all_gather defaults to the current group
    # rather than the first one (each run below makes a new one)
    import torch.distributed.nn.functional  # noqa: F401
    from accelerate.state import AcceleratorState

    for name in CONFIGS:
        # each run ends its process group (Accelerate's end_training) and its state: a fresh
        # one per run, with a file rendezvous (no port to race for) that Accelerate joins
        AcceleratorState._reset_state(reset_partial_state=True)
        dist.init_process_group(
            "gloo",
            init_method=f"file://{out}/store-{name}",
            rank=rank,
            world_size=2,
            timeout=timedelta(seconds=120),
        )
        state = train(name, Path(data), Path(out) / name, batch_size=B)
        if rank == 0:
            torch.save(state, f"{out}/{name}.pt")


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("equivalence-data")
    write_caption_data(folder)
    return folder


@pytest.fixture(scope="module")
def two_processes(data, tmp_path_factory) -> Path:
    """Where the two-process run of every configuration left its final state."""
    out = tmp_path_factory.mktemp("two-processes")
    run_two_processes(_two_process_worker, str(data), str(out))
    return out


def assert_same_tensors(a: dict, b: dict) -> None:
    """Every tensor equal to 1e-6 relative, elementwise (1e-12 absolute: biases whose gradient
    is zero in exact arithmetic, as attention key biases, hold only rounding noise)."""
    assert a.keys() == b.keys()
    for name, x in a.items():
        torch.testing.assert_close(b[name], x, rtol=1e-6, atol=1e-12, msg=lambda m, n=name: n + m)


@pytest.mark.parametrize("name", list(CONFIGS))
def test_one_process_equals_two_processes(name, data, two_processes, tmp_path):
    one = train(name, data, tmp_path / "one", batch_size=2 * B)
    two = torch.load(two_processes / f"{name}.pt")
    # the logged loss is the global batch's (a summed loss: summed over processes)
    assert float(one.pop("__loss__")) == pytest.approx(float(two.pop("__loss__")), rel=1e-5)
    assert_same_tensors(one, two)


# -- exact resume of map-style randomness (issue 21 §3) ---------------------------------------
def _resume_run(name: str, data: Path, out: Path, workers: int, make_step, resume: str = ""):
    torch.manual_seed(0)
    model, pairs, training = CONFIGS[name](data, 1)
    config = TrainConfig(
        output_dir=str(out),
        batch_size=2 * B,
        log_with="",
        progress_bar=False,
        eval_every=0,
        checkpoint_every=1,
        keep_checkpoints=0,
        resume=resume,
        **{**training, "num_workers": workers},
    )
    Trainer(model.double(), pairs, config, step=make_step and make_step()).fit()
    return out / "checkpoints"


def assert_resume_equals_uninterrupted_run(
    name: str, data: Path, tmp_path: Path, *, workers: int = 0, make_step=None
) -> None:
    """A run of configuration ``name`` stopped after step 3 (mid-epoch 2) and resumed ends
    with the uninterrupted run's parameters, buffers and optimizer state, bit for bit."""
    full = _resume_run(name, data, tmp_path / "full", workers, make_step)
    # "kill" the run after step 3: keep only what was on disk then
    stopped = tmp_path / "stopped" / "checkpoints"
    stopped.mkdir(parents=True)
    shutil.copytree(checkpoint_dir(full, 3), checkpoint_dir(stopped, 3))
    torch.manual_seed(1234)  # resuming must not depend on the RNG it starts with
    resumed = _resume_run(name, data, tmp_path / "stopped", workers, make_step, resume="latest")
    last = sorted(p.name for p in full.iterdir())[-1]
    assert last == sorted(p.name for p in resumed.iterdir())[-1]
    a = torch.load(full / last / "state.pt", weights_only=False)
    b = torch.load(resumed / last / "state.pt", weights_only=False)
    tensors_a, tensors_b = _tensors(a["model"]), _tensors(b["model"])
    tensors_a.update(_tensors(a["optimizer"]["state"], "optimizer."))
    tensors_b.update(_tensors(b["optimizer"]["state"], "optimizer."))
    assert tensors_a.keys() == tensors_b.keys() and len(tensors_a) > 10
    for key, value in tensors_a.items():
        assert torch.equal(value, tensors_b[key]), key


@pytest.mark.parametrize("workers", [0, 2])
@pytest.mark.parametrize("name", ["clip", "moco_v2"])
def test_map_style_resume_equals_uninterrupted_run(name, workers, data, tmp_path):
    assert_resume_equals_uninterrupted_run(name, data, tmp_path, workers=workers)


def _tensors(tree, prefix: str = "") -> dict[str, torch.Tensor]:
    if isinstance(tree, torch.Tensor):
        return {prefix: tree}
    if isinstance(tree, dict):
        out = {}
        for k, v in tree.items():
            out.update(_tensors(v, f"{prefix}{k}."))
        return out
    return {}


# -- sampled noise: each process's share of the global draw ------------------------------------
def _noise_per_pair(keys) -> torch.Tensor:
    """``(B, K)`` noise ids of each pair, from shared ``(G, K)`` groups of ``B / G`` pairs."""
    b = len(keys.own_ids)
    return keys.key_ids.repeat_interleave(b // len(keys.key_ids), dim=0)


def test_sampled_noise_of_a_process_is_its_share_of_the_global_draw(monkeypatch):
    import multicon.dist
    import multicon.keys.noise
    from multicon.keys import NoiseKeys, StepInputs, View
    from multicon.pairs import PairBatch

    def keys_for(ids):
        return neg(View(StepInputs(PairBatch(ids, ids, ids)), reverse=False))

    table = nn.Embedding(50, 4)
    neg = NoiseKeys(table, torch.ones(50), k=3, group_size=3)
    ids = torch.arange(8)
    torch.manual_seed(7)
    whole = _noise_per_pair(keys_for(ids))  # groups of 3, 3 and 2 pairs
    monkeypatch.setattr(multicon.dist, "world_size", lambda: 2)
    monkeypatch.setattr(multicon.keys.noise, "all_sizes", lambda x: [4, 4])
    for r in (0, 1):  # rank 0 holds group 0 and a pair of group 1; rank 1 the rest
        monkeypatch.setattr(multicon.keys.noise, "rank", lambda r=r: r)
        torch.manual_seed(7)
        part = _noise_per_pair(keys_for(ids[4 * r : 4 * r + 4]))
        assert torch.equal(part, whole[4 * r : 4 * r + 4])
    # hogwild processes draw for their own pairs and exchange nothing
    monkeypatch.setattr(multicon.dist, "_independent", False)
    multicon.dist.set_independent(True)
    monkeypatch.setattr(multicon.keys.noise, "all_sizes", lambda x: pytest.fail("exchanged"))
    assert _noise_per_pair(keys_for(ids[:4])).shape == (4, 3)
