"""Hogwild: two processes train one shared copy of the parameters, and it learns."""

import tempfile
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
from test_distributed import run_two_processes
from test_word2vec_learning import _topic_precision, _write_corpus

from multicon import methods
from multicon.data.corpus import TextCorpus, encode_corpus
from multicon.hogwild import check_hogwild, share_parameters
from multicon.pairs.context import ContextPairs
from multicon.steps import AutogradStep, FusedSkipGram
from multicon.text import Vocabulary, Word2Vec
from multicon.train import TrainConfig, Trainer


def _leftovers() -> list[Path]:
    return sorted(Path("/dev/shm").glob("multicon-hogwild-*"))


def _share_worker(rank: int, out: str) -> None:
    dist.init_process_group("gloo")
    torch.manual_seed(rank)  # different values per rank: rank 0's must win
    layer = torch.nn.Linear(3, 2)
    if rank == 0:
        torch.save(layer.state_dict(), f"{out}/rank0.pt")
    share_parameters(layer)
    dist.barrier()
    for name, value in torch.load(f"{out}/rank0.pt").items():
        if not torch.equal(getattr(layer, name).detach(), value):
            raise RuntimeError(f"rank {rank} does not hold rank 0's {name}")
    dist.barrier()
    if rank == 1:
        with torch.no_grad():
            layer.bias.add_(10.0)  # written by rank 1 ...
    dist.barrier()
    expected = torch.load(f"{out}/rank0.pt")["bias"] + 10.0
    if not torch.equal(layer.bias.detach(), expected):  # ... seen by both
        raise RuntimeError(f"rank {rank} does not see the other rank's write")


def test_share_parameters_gives_every_rank_one_copy():
    before = _leftovers()
    with tempfile.TemporaryDirectory() as out:
        run_two_processes(_share_worker, out)
    assert _leftovers() == before  # the memory never had a name in /dev/shm


def _word2vec_worker(rank: int, out: str, kernel: str) -> None:
    path = Path(out) / f"topics-{rank}.txt"
    _write_corpus(path)  # the same corpus on both ranks
    text = TextCorpus.from_file(path)
    vocab = Vocabulary.build(text, min_count=1)
    torch.manual_seed(0)
    w2v = Word2Vec.from_vocab(vocab, dim=16)
    pairs = ContextPairs(encode_corpus(text, vocab), vocab.counts, window=3, sample=1e-2)
    config = TrainConfig(
        output_dir=f"{out}/run",
        epochs=3,
        batch_size=256,  # per process: the same global batch as one process at 512
        optimizer="sgd",
        lr=0.025,
        momentum=0.0,
        weight_decay=0.0,
        schedule="linear",
        log_with="",
        progress_bar=False,
        eval_every=0,
    )
    if kernel == "fused":  # word2vec's per-pair C loop, each process on its own share of pairs
        model, step = w2v, FusedSkipGram(w2v, negative=5, threads=1, hogwild=True)
    else:
        model = methods.sgns(w2v, 5, shared_negatives=4, noise_group=64)
        step = AutogradStep(hogwild=True)
    trainer = Trainer(model, pairs, config, step=step)
    trainer.fit()
    if trainer.accelerator.num_processes != 2:
        raise RuntimeError("accelerate did not start two processes")
    torch.save(w2v.vectors.clone(), f"{out}/vectors-{rank}.pt")
    if rank == 0:
        torch.save(_topic_precision(w2v), f"{out}/precision.pt")


@pytest.mark.parametrize("kernel", ["torch", "fused"])
def test_hogwild_word2vec_on_two_processes_learns_one_shared_table(kernel):
    with tempfile.TemporaryDirectory() as out:
        run_two_processes(_word2vec_worker, out, kernel)
        precision = torch.load(f"{out}/precision.pt")
        assert precision > 0.9, precision  # chance: about 0.04
        # one table in shared memory: both ranks end with the same vectors
        assert torch.equal(torch.load(f"{out}/vectors-0.pt"), torch.load(f"{out}/vectors-1.pt"))


def test_hogwild_refuses_what_cannot_share_memory(monkeypatch):
    with pytest.raises(ValueError, match="shares CPU memory"):
        check_hogwild(torch.device("cuda", 0), 2)
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    with pytest.raises(ValueError, match="one machine"):
        check_hogwild(torch.device("cpu"), 2)
    check_hogwild(torch.device("cpu"), 1)  # one process: nothing to share, nothing to check
