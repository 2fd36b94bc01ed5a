"""Two gloo processes with B pairs each must equal one process with the 2B pairs."""

import os
import socket
import sys
import tempfile

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from multicon import (
    AffineViewPairs,
    BatchKeys,
    Chain,
    ContrastiveModel,
    Direction,
    FeatureQueue,
    InfoNCE,
    PairBatch,
    TrainConfig,
    Trainer,
    methods,
)
from multicon.encoders.tower import Tower
from multicon.keys import KeyQueue, MomentumEncoder


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_two_processes(fn, *args) -> None:
    port = free_port()
    mp.spawn(_bootstrap, args=(port, fn, args), nprocs=2, join=True)


def _bootstrap(rank: int, port: int, fn, args) -> None:
    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        RANK=str(rank),
        WORLD_SIZE="2",
        LOCAL_RANK=str(rank),
        LOCAL_WORLD_SIZE="2",
        ACCELERATE_USE_CPU="true",  # CPU processes: Accelerate picks gloo
    )
    torch.set_num_threads(1)
    fn(rank, *args)
    if dist.is_initialized():
        dist.barrier()  # both ranks done before either tears gloo down
        dist.destroy_process_group()
    # Leave without interpreter teardown: a C++ static destructor in torch's CPU/gloo stack
    # aborts ("terminate called without an active exception") in about one exit in four,
    # after the work and the process group are already done. Results are on disk by now.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def make_model(kind: str) -> ContrastiveModel:
    torch.manual_seed(0)
    if kind == "shared":  # SimCLR's NT-Xent: one encoder, symmetric, other queries negative too
        return methods.simclr(torch.nn.Linear(6, 5), temperature=0.2)
    if kind == "two_towers":  # CLIP-style: two encoders, learnable temperature
        return methods.clip(torch.nn.Linear(6, 5), torch.nn.Linear(4, 5), 0.1, learnable=True)
    raise ValueError(kind)


def make_batch(kind: str, n: int = 8) -> PairBatch:
    g = torch.Generator().manual_seed(1)
    query = torch.randn(n, 6, generator=g)
    key = torch.randn(n, 6 if kind == "shared" else 4, generator=g)
    return PairBatch(query, key, torch.arange(n))


def loss_and_grads(model, batch):
    model.zero_grad()
    loss = model(batch).loss
    loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}


def _in_batch_worker(rank: int, kind: str, out: str) -> None:
    # a file rendezvous: no TCP port that a concurrent run could take between pick and bind
    dist.init_process_group("gloo", init_method=f"file://{out}/store", rank=rank, world_size=2)
    model = make_model(kind)
    ddp = torch.nn.parallel.DistributedDataParallel(model)
    full = make_batch(kind)
    half = slice(rank * 4, rank * 4 + 4)
    batch = PairBatch(full.query[half], full.key[half], full.key_id[half])
    ddp.zero_grad()
    loss = ddp(batch).loss
    loss.backward()  # DDP averages gradients over the two ranks
    mean_loss = loss.detach().clone()
    dist.all_reduce(mean_loss)
    grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    torch.save({"loss": mean_loss / 2, "grads": grads}, f"{out}/rank{rank}.pt")


@pytest.mark.parametrize("kind", ["shared", "two_towers"])
def test_two_processes_equal_one_process_in_batch(kind, tmp_path):
    loss, grads = loss_and_grads(make_model(kind), make_batch(kind))
    run_two_processes(_in_batch_worker, kind, str(tmp_path))
    for rank in range(2):
        got = torch.load(tmp_path / f"rank{rank}.pt")
        assert abs(got["loss"].item() - loss.item()) < 1e-5
        for name, g in grads.items():
            assert torch.allclose(got["grads"][name], g, atol=1e-5), name


def _queue_worker(rank: int, out: str) -> None:
    # a file rendezvous: no TCP port that a concurrent run could take between pick and bind
    dist.init_process_group("gloo", init_method=f"file://{out}/store", rank=rank, world_size=2)
    queue = KeyQueue(BatchKeys(torch.nn.Identity()), size=10, dim=3)
    keys = torch.full((3, 3), float(rank + 1)) + torch.arange(3.0).unsqueeze(1) / 10
    ids = torch.arange(3) + 100 * rank
    queue.enqueue(keys, ids)  # 6 keys: fills slots 0..5
    queue.enqueue(keys + 10, ids + 1000)  # 6 more: slots 6..9 then wraps to 0..1
    torch.save(
        {"keys": queue.keys.clone(), "ids": queue.ids.clone(), "ptr": queue.ptr.clone()},
        f"{out}/rank{rank}.pt",
    )


def test_queue_receives_gathered_keys_in_rank_order(tmp_path):
    run_two_processes(_queue_worker, str(tmp_path))
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt") for r in range(2))
    assert torch.equal(r0["keys"], r1["keys"]) and torch.equal(r0["ids"], r1["ids"])
    second = [1000, 1001, 1002, 1100, 1101, 1102]
    expected_ids = second[4:] + [2, 100, 101, 102] + second[:4]
    assert r0["ids"].tolist() == expected_ids
    assert r0["ptr"].item() == 2
    assert r0["keys"][3, 0].item() == pytest.approx(2.0)  # rank 1's first key of the first step


class NoBatchNormEncoder(torch.nn.Sequential):
    def __init__(self):
        super().__init__(
            torch.nn.Flatten(), torch.nn.Linear(64, 32), torch.nn.ReLU(), torch.nn.Linear(32, 16)
        )


class LockedEncoder(Tower):
    """A frozen random backbone and the projection that trains (locked tuning)."""

    def __init__(self):
        backbone = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 32), torch.nn.ReLU())
        super().__init__(backbone, feature_dim=32, embed_dim=16, frozen=True)

    def features(self, inputs):
        return self.backbone(inputs)


def _train(out_dir: str, batch_size: int, negatives: str) -> int:
    torch.manual_seed(0)
    images = torch.rand(48, 1, 8, 8, generator=torch.Generator().manual_seed(3))
    if negatives == "momentum_queue":  # MoCo v2 as its recipe builds it: own key, then queue
        model = methods.moco_v2(NoBatchNormEncoder(), 40, 16, momentum=0.9, temperature=0.2)
    elif negatives == "momentum_queue_in_batch":  # the batch's momentum keys, then the queue
        encoder = NoBatchNormEncoder()
        ema = MomentumEncoder(encoder, 0.9)
        keys = Chain(BatchKeys(ema), KeyQueue(BatchKeys(ema), 40, 16))
        model = ContrastiveModel([Direction(encoder, keys)], InfoNCE(0.2))
    elif negatives == "feature_queue":  # queued features of every rank, re-projected each step
        locked = LockedEncoder()
        keys = Chain(BatchKeys(locked), FeatureQueue(locked, 40))
        model = ContrastiveModel([Direction(locked, keys)], InfoNCE(0.2))
    else:
        encoder = NoBatchNormEncoder()
        model = methods.clip(encoder, encoder, 0.2, learnable=False)
    config = TrainConfig(
        output_dir=out_dir,
        epochs=2,
        batch_size=batch_size,
        optimizer="sgd",
        lr=0.05,
        log_with="tensorboard,jsonl",  # trackers are built before the Accelerator
        progress_bar=False,
        eval_every=0,
    )
    trainer = Trainer(model, AffineViewPairs(images, seed=5), config)
    trainer.fit()
    if trainer.accelerator.is_main_process:
        torch.save(model.state_dict(), f"{out_dir}/final.pt")
    return trainer.accelerator.num_processes


def _trainer_worker(rank: int, out_dir: str, negatives: str) -> None:
    if _train(out_dir, batch_size=6, negatives=negatives) != 2:
        raise RuntimeError("accelerate did not start two processes")


@pytest.mark.parametrize(
    "negatives", ["in_batch", "momentum_queue", "momentum_queue_in_batch", "feature_queue"]
)
def test_trainer_on_two_processes_gives_one_process_parameters(negatives):
    with tempfile.TemporaryDirectory() as one, tempfile.TemporaryDirectory() as two:
        _train(one, batch_size=12, negatives=negatives)
        run_two_processes(_trainer_worker, two, negatives)
        a = torch.load(f"{one}/final.pt")
        b = torch.load(f"{two}/final.pt")
        assert a.keys() == b.keys()
        for name in a:
            assert torch.allclose(a[name].float(), b[name].float(), atol=1e-5), name


def _word2vec_train(out_dir: str, batch_size: int) -> int:
    """The torch kernel's SGNS (a loss summed over pairs), plain SGD, one shared noise draw a
    step (the same draw on every rank: the same seed), on a small corpus."""
    from multicon.data.corpus import TextCorpus, encode_corpus
    from multicon.pairs.context import ContextPairs
    from multicon.text import Vocabulary, Word2Vec

    path = f"{out_dir}/corpus.txt"
    words = [f"w{(i * 7) % 23}" for i in range(600)]
    with open(path, "w") as f:
        f.write("\n".join(" ".join(words[i : i + 12]) for i in range(0, 600, 12)))
    corpus = TextCorpus.from_file(path)
    vocab = Vocabulary.build(corpus, min_count=1)
    torch.manual_seed(0)
    w2v = Word2Vec.from_vocab(vocab, dim=8, sparse=False)  # DDP all-reduces dense gradients
    with torch.no_grad():
        w2v.output_embeddings.weight.normal_(0, 0.1)
    pairs = ContextPairs(encode_corpus(corpus, vocab), vocab.counts, window=2, sample=0, seed=0)
    model = methods.sgns(w2v, 5, shared_negatives=4, noise_group=None)
    config = TrainConfig(
        output_dir=f"{out_dir}/run", max_steps=6, batch_size=batch_size, optimizer="sgd",
        lr=0.025, momentum=0.0, weight_decay=0.0, schedule="constant", log_every=2,
        log_with="", progress_bar=False, eval_every=0,
    )  # fmt: skip
    trainer = Trainer(model, pairs, config)
    result = trainer.fit()
    if trainer.accelerator.is_main_process:
        torch.save(
            {
                "state": w2v.state_dict(),
                "losses": [h["loss"] for h in result.history if "loss" in h],
            },
            f"{out_dir}/final.pt",
        )
    return trainer.accelerator.num_processes


def _word2vec_worker(rank: int, out_dir: str) -> None:
    if _word2vec_train(out_dir, batch_size=32) != 2:
        raise RuntimeError("accelerate did not start two processes")


def test_a_summed_loss_steps_the_same_on_two_processes_as_on_one():
    """word2vec's SGNS sums its loss over pairs; DDP averages gradients, so without scaling two
    processes take half-size steps. The step scales a summed loss by the number of processes,
    and the logged loss is the sum over processes."""
    with tempfile.TemporaryDirectory() as one, tempfile.TemporaryDirectory() as two:
        _word2vec_train(one, batch_size=64)
        run_two_processes(_word2vec_worker, two)
        a, b = torch.load(f"{one}/final.pt"), torch.load(f"{two}/final.pt")
        assert a["losses"] == pytest.approx(b["losses"], rel=1e-5)
        for name in a["state"]:
            assert torch.allclose(a["state"][name], b["state"][name], atol=1e-6), name
