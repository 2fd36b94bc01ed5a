"""Bad flags and bad files meet an error naming the flag or the file, before anything is
written; evaluations with nothing to score say so instead of reporting a number."""

from __future__ import annotations

import doctest
import gzip
import importlib
import json
import math
import pkgutil
import random
import re
import sys
import tempfile
from pathlib import Path

import pytest
import torch
from test_image_data import write_hub_parquet
from textures import texture_images, write_image_folder

import multicon
from multicon import (
    BatchPairGenerator,
    NonFiniteLossError,
    PairBatch,
    TrainConfig,
    Trainer,
)
from multicon.recipes import clip as clip_recipe
from multicon.recipes import moco, simclr
from multicon.recipes import word2vec as word2vec_recipe

ROOT = Path(__file__).resolve().parents[1]


def load_script(relative: str):
    spec = importlib.util.spec_from_file_location(Path(relative).stem, ROOT / relative)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve annotations through sys.modules
    spec.loader.exec_module(module)
    return module


# -- TrainConfig ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("checkpoint_every", -1, "checkpoint_every must be >= 0, got -1"),
        ("keep_checkpoints", -2, "keep_checkpoints must be >= 0, got -2"),
        ("eval_every", -1, "eval_every must be >= 0, got -1"),
        ("warmup_steps", -5, "warmup_steps must be >= 0, got -5"),
        ("weight_decay", -0.1, "weight_decay must be >= 0, got -0.1"),
        ("grad_clip", -1.0, "grad_clip must be >= 0, got -1.0"),
        ("max_steps", -3, "max_steps must be >= 0, got -3"),
        ("num_workers", -1, "num_workers must be >= 0, got -1"),
        ("log_every", 0, "log_every must be at least 1, got 0"),
        ("momentum", 5.0, r"momentum must be in \[0, 1\), got 5.0"),
        ("momentum", -0.5, r"momentum must be in \[0, 1\), got -0.5"),
        ("momentum", 1.0, r"momentum must be in \[0, 1\), got 1.0"),
    ],
)
def test_train_config_names_the_bad_value(name, value, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig(**{name: value})


def test_log_every_zero_is_refused_before_the_run(tmp_path):
    """It used to train up to the first step and die of ZeroDivisionError there."""
    out = tmp_path / "run"
    with pytest.raises(ValueError, match="log_every must be at least 1, got 0"):
        simclr.main(["--data", str(tmp_path / "none"), "--output_dir", str(out),
                             "--log_every", "0"])  # fmt: skip
    assert not out.exists()


# -- image recipes --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--out_dim", "0"], "--out_dim must be at least 1, got 0"),
        (["--head_hidden_dim", "0"], "--head_hidden_dim must be at least 1, got 0"),
        (["--head_layers", "0"], "--head_layers must be at least 1, got 0"),
        (["--predictor_hidden_dim", "-1"], "--predictor_hidden_dim must be >= 0, got -1"),
        (["--knn_k", "0"], "--knn_k must be at least 1, got 0"),
        (["--knn_temperature", "0"], "--knn_temperature must be positive, got 0.0"),
        (["--knn_max_train", "-1"], "--knn_max_train must be >= 0, got -1"),
        (["--max_train_images", "-5"], "--max_train_images must be >= 0, got -5"),
        (["--max_test_images", "-1"], "--max_test_images must be >= 0, got -1"),
        (["--image_size", "-32"], "--image_size must be >= 0, got -32"),
    ],
)
@pytest.mark.parametrize("recipe", [simclr, moco], ids=["simclr", "moco"])
def test_image_recipe_flags(tmp_path, recipe, flags, message):
    out = tmp_path / "run"
    with pytest.raises(ValueError, match=message):
        recipe.main(["--data", str(tmp_path / "none"), "--output_dir", str(out), *flags])
    assert not out.exists()


@pytest.fixture(scope="module")
def textures(tmp_path_factory):
    root = tmp_path_factory.mktemp("textures")
    write_image_folder(root / "train", texture_images(6, size=8, seed=0))  # 24 images
    write_image_folder(root / "test", texture_images(2, size=8, seed=1))  # 8 images
    return root


@pytest.fixture(scope="module")
def hub_parquet(tmp_path_factory):
    root = tmp_path_factory.mktemp("parquet")
    write_hub_parquet(root, rows_per_split=24)
    return root


@pytest.mark.parametrize("source", ["textures", "hub_parquet"])
def test_max_train_images_applies_before_decoding(request, monkeypatch, source):
    """Only the images kept are decoded (CIFAR's parquet took 20 s and 1.3 GB for a 512-image
    smoke run, decoding all 50,000 first)."""
    from multicon.data import images
    from multicon.image_recipe import ImageDataArgs, load_splits

    decoded = []
    real = images.decode_image

    def counting(data, name, size=None):
        decoded.append(name)
        return real(data, name, size)

    monkeypatch.setattr(images, "decode_image", counting)
    folder = request.getfixturevalue(source)
    args = ImageDataArgs(data=str(folder), max_train_images=10, max_test_images=3)
    train, test = load_splits(args)
    assert (len(train), len(test)) == (10, 3)
    assert len(decoded) == 13, decoded


def test_max_images_counts_readable_images(tmp_path):
    """With on_error=skip, unreadable images do not count towards the N kept."""
    from multicon.data import load_images

    write_hub_parquet(tmp_path, rows_per_split=8, corrupt_row=1)
    data = load_images(tmp_path, "train", on_error="skip", limit=4)
    assert len(data) == 4 and len(data.skipped) == 1
    assert data.labels.tolist() == [0, 0, 1, 0]  # rows 0, 2, 3, 4


# -- CLIP recipe ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--max_length", "0"], r"--max_length must be at least 3 .*, got 0"),
        (["--max_length", "1"], r"--max_length must be at least 3 .*, got 1"),
        (["--image_size", "0"], "--image_size must be at least 1, got 0"),
        (["--vocab_size", "1"], r"--vocab_size must be at least 5 .*, got 1"),
        (["--embed_dim", "0"], "--embed_dim must be at least 1, got 0"),
        (["--text_width", "30", "--text_heads", "4"], "--text_width 30 .* --text_heads 4"),
        (
            ["--image_arch", "vit", "--vit_width", "100", "--vit_heads", "3"],
            "--vit_width 100 is not a multiple of --vit_heads 3",
        ),
        (
            ["--image_arch", "vit", "--image_size", "32", "--vit_patch_size", "7"],
            "--image_size 32 is not a multiple of --vit_patch_size 7",
        ),
    ],
)
def test_clip_recipe_flags(tmp_path, flags, message):
    out = tmp_path / "run"
    argv = ["--train_jsonl", str(tmp_path / "none.jsonl"), "--output_dir", str(out), *flags]
    with pytest.raises(ValueError, match=message):
        clip_recipe.main(argv)
    assert not out.exists()


def test_sentencepiece_vocabulary_smaller_than_the_alphabet():
    from multicon.encoders.tokenization import train_sentencepiece_tokenizer

    captions = ["a red square", "a blue circle", "the green triangle is big"]
    with pytest.raises(ValueError, match=r"vocab_size 8 .* at least 20"):
        train_sentencepiece_tokenizer(captions, vocab_size=8)
    with pytest.raises(ValueError, match="vocab_size must be at least 5"):
        train_sentencepiece_tokenizer(captions, vocab_size=1)


# -- word2vec recipe ------------------------------------------------------------------------------
def write_corpus(path: Path) -> Path:
    rng = random.Random(1)
    lines = [" ".join(f"t{t % 8}w{rng.randrange(4)}" for _ in range(10)) for t in range(300)]
    path.write_text("\n".join(lines) + "\n")
    return path


def w2v_argv(tmp_path: Path, *extra: str) -> list[str]:
    return [
        *("--corpus", str(write_corpus(tmp_path / "corpus.txt")), "--min_count", "1"),
        *("--dim", "8", "--epochs", "1", "--batch_size", "256", "--sample", "0"),
        *("--output_dir", str(tmp_path / "run"), "--log_with", "", "--progress_bar", "0"),
        *("--analogies", "", "--wordsim", "", "--simlex", "", *extra),
    ]


@pytest.mark.parametrize("flag", ["analogies", "wordsim", "simlex"])
def test_word2vec_missing_evaluation_file_is_named_before_training(tmp_path, flag):
    missing = tmp_path / "nowhere.txt"
    w2v = word2vec_recipe
    with pytest.raises(FileNotFoundError, match=re.escape(f"--{flag}: no file {missing}")):
        w2v.main(w2v_argv(tmp_path, f"--{flag}", str(missing)))
    assert not (tmp_path / "run").exists()


def _no_nan(constant: str):
    raise ValueError(f"{constant} is not JSON")


def test_word2vec_evaluation_with_nothing_answered_reports_none(tmp_path):
    """No analogy question answered, fewer than two similarity pairs known: the scores are
    null with their counts, report.json is valid JSON and the model card lists no such metric."""
    (tmp_path / "q.txt").write_text(": toy\nzz yy xx ww\nt0w0 t0w1 vv t1w1\n")
    (tmp_path / "ws.tsv").write_text("t0w0\tt0w1\t9\nzz\tt5w1\t1\n")
    w2v = word2vec_recipe
    argv = w2v_argv(tmp_path)[:-6] + [
        *("--analogies", str(tmp_path / "q.txt"), "--wordsim", str(tmp_path / "ws.tsv")),
        *("--simlex", "", "--eval_every", "1"),  # the in-training evaluation too
    ]
    report = w2v.main(argv)
    assert report["analogy"] is None and report["analogy_answered"] == 0
    assert report["analogy_oov"] == 2
    assert report["analogy_sections"] == {"toy": None}
    assert report["ws353"] is None and report["ws353_pairs"] == 1 and report["ws353_oov"] == 1
    saved = json.loads((tmp_path / "run" / "report.json").read_text(), parse_constant=_no_nan)
    assert saved["analogy"] is None
    json.dumps(report, allow_nan=False)
    card = (tmp_path / "run" / "model" / "README.md").read_text()
    assert "nan" not in card.lower() and "analogy" not in card


def test_word_evaluations_with_nothing_to_score(tmp_path):
    from multicon.eval.words import evaluate_analogies, evaluate_similarity
    from multicon.text import Vocabulary

    vocab = Vocabulary(["a", "b", "c"], [3, 2, 1])
    vectors = torch.randn(3, 4)
    (tmp_path / "q.txt").write_text(": one\nx y z w\n: two\na b zz c\n")
    result = evaluate_analogies(vectors, vocab, tmp_path / "q.txt")
    assert result.accuracy is None and result.answered == 0 and result.oov == 2
    assert result.section_accuracy() == {"one": None, "two": None}
    (tmp_path / "ws.tsv").write_text("a\tb\t3\nx\ty\t1\n")
    sim = evaluate_similarity(vectors, vocab, tmp_path / "ws.tsv")
    assert sim.spearman is None and (sim.pairs, sim.oov) == (1, 1)


def test_model_card_refuses_a_metric_that_is_not_a_number():
    from multicon.hub.card import build_model_card

    with pytest.raises(ValueError, match="metric 'ws353' is nan"):
        build_model_card(model_name="m", datasets=["d"], metrics={"ws353": math.nan}, usage="1")


# -- bad files ------------------------------------------------------------------------------------
def test_truncated_parquet_is_named(tmp_path):
    from multicon.data import load_images
    from multicon.data.captions import load_caption_dataset

    write_hub_parquet(tmp_path)
    bad = tmp_path / "train-00000-of-00001.parquet"
    bad.write_bytes(bad.read_bytes()[: bad.stat().st_size // 2])
    with pytest.raises(ValueError, match=re.escape(f"{bad}: not a readable parquet file")):
        load_images(tmp_path, "train")
    with pytest.raises(ValueError, match=re.escape(f"{bad}: not a readable parquet file")):
        load_caption_dataset("parquet", data_dir=str(tmp_path), image_column="img")


def test_truncated_gzip_corpus_is_named(tmp_path):
    from multicon.data.corpus import TextCorpus

    path = tmp_path / "corpus.txt.gz"
    text = "\n".join(f"w{i % 97} w{i % 13} w{i % 7}" for i in range(20000)).encode()
    path.write_bytes(gzip.compress(text)[:-500])
    with pytest.raises(ValueError, match=re.escape(str(path)) + ": .*truncated or corrupt"):
        list(TextCorpus.from_file(path))
    path.write_bytes(b"\x1f\x8b" + b"\x00" * 40)  # a gzip header, then garbage
    with pytest.raises(ValueError, match=re.escape(str(path)) + ": .*truncated or corrupt"):
        list(TextCorpus.from_file(path))


def test_non_utf8_captions_file_is_named(tmp_path):
    from PIL import Image

    from multicon.data.captions import CaptionFolder

    Image.new("RGB", (8, 8), "red").save(tmp_path / "a.png")
    good = json.dumps({"image": "a.png", "captions": ["red"]}).encode()
    bad = b'{"image": "a.png", "captions": ["r\xffd"]}'
    (tmp_path / "train.jsonl").write_bytes(good + b"\n" + bad + b"\n")
    where = re.escape(f"{tmp_path / 'train.jsonl'}:2: not UTF-8 text")
    with pytest.raises(ValueError, match=where):
        CaptionFolder(tmp_path / "train.jsonl")


# -- non-finite loss ------------------------------------------------------------------------------
class Noise(BatchPairGenerator):
    def num_pairs(self):
        return 64

    def batches(self, batch_size, *, epoch, device, rank=0, world_size=1):
        g = self.rng(epoch)
        for _ in range(self.num_batches(batch_size)):
            x = torch.randn(batch_size, 4, generator=g)
            yield PairBatch(x, x + 0.1, torch.arange(batch_size))


class Cube(torch.nn.Module):
    def forward(self, x):
        return x**3  # weights of 1e35 give outputs of 1e105: inf in float32


class Poison(torch.optim.SGD):
    """SGD that, after its step number ``at`` (1-based), fills ``tensor`` with ``value``."""

    def __init__(self, params, schedule: dict[int, tuple[torch.Tensor, float]]):
        super().__init__(params, lr=0.01)
        self.schedule, self.calls = schedule, 0

    @torch.no_grad()
    def step(self, closure=None):
        super().step()
        self.calls += 1
        if self.calls in self.schedule:
            tensor, value = self.schedule[self.calls]
            tensor.fill_(value)


def run_to_nan(tmp_path, schedule_of):
    torch.manual_seed(0)
    # BatchNorm after the cube: inf - inf gives NaN (before it, an inf variance gives zeros)
    encoder = torch.nn.Sequential(torch.nn.Linear(4, 4), Cube(), torch.nn.BatchNorm1d(4))
    model = multicon.methods.clip(encoder, encoder, 0.1, learnable=False)  # symmetric, in-batch
    config = TrainConfig(
        output_dir=str(tmp_path), epochs=10, batch_size=8, log_with="", progress_bar=False,
        eval_every=0, checkpoint_every=1, keep_checkpoints=0, log_every=1000,
    )  # fmt: skip
    trainer = Trainer(model, Noise(), config, optimizer=lambda m: Poison(m.parameters(), {}))
    trainer.optimizer.schedule = schedule_of(encoder)
    with pytest.raises(NonFiniteLossError) as err:
        trainer.fit()
    return str(err.value)


def test_nan_error_counts_steps_as_checkpoints_do_and_skips_the_step_it_started_from(tmp_path):
    """Weights of 1e35 (finite) after step 5; step 6 computes inf embeddings and a NaN loss.
    Checkpoint step-5 holds the weights step 6 started from, so it is not the last good one."""
    said = run_to_nan(tmp_path, lambda enc: {5: (enc[0].weight, 1e35)})
    assert "loss is nan at step 6 " in said, said
    ckpt = tmp_path / "checkpoints"
    assert (ckpt / "step-000000005").is_dir() and not (ckpt / "step-000000006").exists()
    assert f"the last good checkpoint is {ckpt / 'step-000000004'}" in said, said


def test_nan_error_never_calls_a_checkpoint_with_non_finite_weights_good(tmp_path):
    """A NaN BatchNorm running mean (unused in training mode: the losses stay finite) from step
    3 on: checkpoints 3 and 4 hold non-finite tensors, so the last good one is step-2."""

    def schedule(enc):
        return {3: (enc[2].running_mean, math.nan), 5: (enc[0].weight, 1e35)}

    said = run_to_nan(tmp_path, schedule)
    assert "loss is nan at step 6 " in said, said
    assert f"the last good checkpoint is {tmp_path / 'checkpoints' / 'step-000000002'}" in said


def test_nan_error_without_any_good_checkpoint(tmp_path):
    said = run_to_nan(tmp_path, lambda enc: {1: (enc[0].weight, 1e35)})
    assert "loss is nan at step 2 " in said and "no checkpoint is good" in said, said


# -- hogwild shared memory ------------------------------------------------------------------------
def _hogwild_killed_in_set_up(rank: int) -> None:
    """Rank 0 dies by SIGKILL inside share_parameters, after the shared tables exist and before
    the other rank has mapped them."""
    import os
    import signal

    import torch.distributed as dist

    from multicon import hogwild

    dist.init_process_group("gloo")
    real = dist.barrier

    def barrier(*args, **kwargs):
        if dist.get_rank() == 0:
            os.kill(os.getpid(), signal.SIGKILL)
        return real(*args, **kwargs)

    hogwild.dist.barrier = barrier
    hogwild.share_parameters(torch.nn.Linear(256, 256))


def test_hogwild_set_up_killed_leaves_nothing_in_dev_shm():
    from test_distributed import run_two_processes

    shm = Path("/dev/shm")
    if not shm.is_dir():
        pytest.skip("needs Linux shared memory")
    before = set(shm.glob("multicon-hogwild-*"))
    with pytest.raises(Exception, match="signal|SIGKILL"):
        run_two_processes(_hogwild_killed_in_set_up)
    left = set(shm.glob("multicon-hogwild-*")) - before
    for path in left:  # this test's own leftovers, found on code that leaks them
        path.unlink()
    assert not left


# -- doctests leave nothing behind ----------------------------------------------------------------
def _modules_with_temporary_files() -> list[str]:
    names = []
    for info in pkgutil.walk_packages(multicon.__path__, "multicon."):
        origin = importlib.util.find_spec(info.name).origin
        if origin and origin.endswith(".py") and "tempfile" in Path(origin).read_text():
            names.append(info.name)
    return names


@pytest.mark.parametrize("name", _modules_with_temporary_files())
def test_doctest_examples_remove_their_temporary_files(tmp_path, monkeypatch, name):
    """Every docstring example that makes a temporary folder removes it (with
    `tempfile.TemporaryDirectory`): a doctest run used to leave ~10 folders in /tmp."""
    module = pytest.importorskip(name)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    finder, runner = (
        doctest.DocTestFinder(),
        doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE),
    )
    for test in finder.find(module):
        runner.run(test)
    assert runner.summarize(verbose=False).failed == 0
    # torch.compile's cache (one per user, reused by every run) is not an example's leftover
    left = [p.name for p in tmp_path.iterdir() if not p.name.startswith("torchinductor_")]
    assert left == []
