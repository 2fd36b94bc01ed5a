"""The model cards the recipes write are true: each kind (digits demo, SimCLR, word2vec, CLIP)
is trained for a step or two, then its README.md is read as a user would: the YAML metadata
(model-index entries per task and dataset), the usage snippet (run against the saved folder),
and the statements (loss, preprocessing, hyperparameters, random-init baseline)."""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

import pytest
import torch
import yaml
from caption_fixtures import concepts, draw_shape, write_shapes_jsonl
from hub_fake import TOKEN
from huggingface_hub import constants
from textures import texture_images, write_image_folder

from multicon.pairs.views import CIFAR10_MEAN
from multicon.recipes import clip as clip_recipe
from multicon.recipes import demo as demo_recipe
from multicon.recipes import simclr as simclr_recipe
from multicon.recipes import word2vec as word2vec_recipe

QUIET = ["--log_with", "", "--progress_bar", "false"]


# -- reading a card -------------------------------------------------------------------------
def metadata(folder: Path) -> dict:
    header = re.match(r"---\n(.*?)\n---\n", (folder / "README.md").read_text(), re.DOTALL)
    assert header, "the card has no YAML header"
    return yaml.safe_load(header.group(1))


def model_index(folder: Path) -> dict[tuple, dict[str, float]]:
    """``{(task type, dataset type, split): {metric type: value}}`` of the card's model-index."""
    (entry,) = metadata(folder)["model-index"]
    found: dict[tuple, dict[str, float]] = {}
    for result in entry["results"]:
        key = (result["task"]["type"], result["dataset"]["type"], result["dataset"].get("split"))
        assert key not in found, f"two model-index entries for {key}"
        found[key] = {m["type"]: m["value"] for m in result["metrics"]}
    return found


def section(folder: Path, title: str) -> str:
    text = (folder / "README.md").read_text()
    match = re.search(rf"\n## {title}\n(.*?)(?=\n## |\Z)", text, re.DOTALL)
    assert match, f"the card has no '{title}' section"
    return match.group(1)


def table(text: str) -> list[dict[str, str]]:
    """The first Markdown table in ``text`` as rows of {header: cell}."""
    lines = [line for line in text.splitlines() if line.startswith("|")]
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    return [dict(zip(header, (c.strip() for c in line.strip("|").split("|")), strict=True))
            for line in lines[2:]]  # fmt: skip


def results(folder: Path) -> list[dict[str, str]]:
    return table(section(folder, "Evaluation results"))


def hyperparameters(folder: Path) -> dict[str, str]:
    rows = table(section(folder, "Training hyperparameters"))
    return {r["name"].strip("`"): r["value"].strip("`") for r in rows}


def run_usage(folder: Path) -> dict:
    """Run the card's usage snippet against the saved folder; its variables."""
    code = re.search(r"## Usage\n\n```python\n(.*?)```", (folder / "README.md").read_text(), re.S)
    assert code, "the card has no usage snippet"
    namespace: dict = {}
    exec(code.group(1).replace("path/to/this/folder", str(folder)), namespace)  # noqa: S102
    return namespace


def check_baseline(folder: Path, expected: dict[tuple[str, str], float], abs: float = 1e-4):
    """Every result row has its random-init score beside it: ``expected`` maps (dataset, metric
    type) to the score the recipe measured before training."""
    rows = results(folder)
    assert rows and all(r["random init"] != "" for r in rows), rows
    shown = {}
    for row in rows:
        metric = re.search(r"\(`([^`]+)`\)$", row["metric"])  # "name (`type`)" or "type"
        shown[(row["dataset"], metric.group(1) if metric else row["metric"])] = row["random init"]
    assert expected.keys() <= shown.keys(), shown
    for key, value in expected.items():
        assert float(shown[key]) == pytest.approx(value, abs=abs), key


# -- image models ---------------------------------------------------------------------------
def check_image_usage(folder: Path, model_class, size: int, channels: int, feature_dim: int):
    """The snippet feeds inputs of the model's size, normalised as stated, and gives the
    backbone features the kNN score was measured on (not the projection)."""
    ns = run_usage(folder)
    assert ns["images"].shape == (2, channels, size, size)
    model = model_class.from_pretrained(folder)
    with torch.no_grad():
        assert torch.equal(ns["features"], model.features(ns["inputs"]))
        assert model(ns["inputs"]).shape[1] != feature_dim  # the projection is another output
    assert ns["features"].shape == (2, feature_dim)
    assert f"torch.Size([2, {feature_dim}])" in section(folder, "Usage")
    rows = dict((r["input"], r["value"]) for r in table(section(folder, "Preprocessing")))
    assert rows["input size"].startswith(f"{size}x{size} pixels, {channels} channel")
    assert f"{feature_dim} numbers per image" in rows["output"]
    return rows


def test_digits_demo_card(tmp_path, capsys):
    from multicon.encoders.small_cnn import SmallConvEncoder

    argv = ["--output_dir", str(tmp_path), "--max_steps", "2", "--batch_size", "32"]
    summary = demo_recipe.main([*argv, "--eval_every", "0", "--width", "4", "--proj_dim", "8"])
    folder = tmp_path / "model"
    index = model_index(folder)
    assert index == {
        ("image-classification", "sklearn-digits", "held-out"): {
            "knn_top1": pytest.approx(summary["knn_top1_trained"], abs=1e-4)
        }
    }
    check_baseline(folder, {("sklearn-digits", "knn_top1"): summary["knn_top1_random_init"]})
    rows = check_image_usage(folder, SmallConvEncoder, size=8, channels=1, feature_dim=16)
    assert rows["mean / std"].startswith("none")
    text = (folder / "README.md").read_text()
    assert "symmetric InfoNCE" in text  # the loss it was trained with
    params = hyperparameters(folder)
    assert params["max_steps"] == "2" and params["batch_size"] == "32" and "lr" in params


@pytest.fixture(scope="module")
def texture_folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("textures")
    write_image_folder(root / "train", texture_images(4, size=16, seed=0))
    write_image_folder(root / "test", texture_images(2, size=16, seed=1))
    return root


def test_simclr_card(texture_folder, tmp_path):
    from multicon.encoders import ImageEncoder

    out = tmp_path / "simclr"
    tiny = ["--max_steps", "1", "--batch_size", "16", "--head_hidden_dim", "32", "--out_dim",
            "16", "--cifar_stem", "false", "--knn_k", "5", "--eval_every", "0", *QUIET]  # fmt: skip
    summary = simclr_recipe.main(["--data", str(texture_folder), "--output_dir", str(out), *tiny])
    folder = out / "model"
    dataset = texture_folder.name
    assert model_index(folder) == {
        ("image-classification", dataset, "test"): {
            "knn_top1": pytest.approx(summary["knn_top1"], abs=1e-4)
        }
    }
    check_baseline(folder, {(dataset, "knn_top1"): summary["knn_top1_random_init"]})
    rows = check_image_usage(folder, ImageEncoder, size=16, channels=3, feature_dim=512)
    # what the views and the kNN used: the training split's statistics, saved with the model
    saved = json.loads((folder / "config.json").read_text())["normalize"]
    assert json.loads(rows["mean"]) == pytest.approx(summary["normalize"]["mean"]) != CIFAR10_MEAN
    assert json.loads(rows["std"]) == pytest.approx(summary["normalize"]["std"])
    assert saved["mean"] == pytest.approx(summary["normalize"]["mean"])
    text = (folder / "README.md").read_text()
    assert "trained with SimCLR: InfoNCE" in text
    params = hyperparameters(folder)
    assert {"temperature", "lr", "batch_size", "epochs", "max_steps", "arch"} <= params.keys()


def test_failed_push_after_training_is_recorded_not_raised(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HF_TOKEN", TOKEN)  # a token, but HF_HUB_OFFLINE=1: the upload fails
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    argv = ["--output_dir", str(tmp_path), "--max_steps", "1", "--batch_size", "32"]
    argv += ["--eval_every", "0", "--width", "4", "--proj_dim", "8", "--push_to_hub", "me/d"]
    summary = demo_recipe.main(argv)  # returns: no traceback
    err = capsys.readouterr().err.strip().splitlines()
    failed = [line for line in err if line.startswith("push_to_hub:")]
    assert len(failed) == 1 and "me/d" in failed[0] and "offline" in failed[0].lower()
    assert TOKEN not in "\n".join(err)
    saved = json.loads((tmp_path / "summary.json").read_text())
    assert saved["push"]["repo_id"] == "me/d" and "offline" in saved["push"]["error"].lower()
    assert saved["hub_commit"] is None and summary["push"] == saved["push"]
    assert (tmp_path / "model" / "model.safetensors").is_file()  # the trained model is kept


# -- word2vec -------------------------------------------------------------------------------
@pytest.fixture
def hub(hub, monkeypatch):
    """The shared fake Hub (conftest.py), logged in through HF_TOKEN."""
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    return hub


def word_files(folder: Path) -> list[str]:
    """A topic corpus and the three evaluation files, under their standard names."""
    rng = random.Random(1)
    lines = []
    for _ in range(300):
        t = rng.randrange(6)
        lines.append(" ".join(f"t{t}w{rng.randrange(4)}" for _ in range(10)))
    (folder / "corpus.txt").write_text("\n".join(lines) + "\n")
    (folder / "questions-words.txt").write_text(
        ": toy\nt0w0 t0w1 t1w0 t1w1\nt2w0 t2w1 t3w0 t3w1\nt0w0 t0w1 unknown t1w1\n"
    )
    pairs = "t0w0\tt0w1\t9\nt0w0\tt5w1\t1\nt2w2\tt2w3\t8\nt2w2\tt4w0\t2\n"
    (folder / "wordsim353.tsv").write_text(pairs)
    (folder / "simlex999.txt").write_text(
        "# Word 1\tWord 2\tHuman (mean)\nt1w0\tt1w2\t9\nt1w0\tt3w1\t1\nt4w1\tt4w3\t8\n"
    )
    return [
        *("--corpus", str(folder / "corpus.txt"), "--min_count", "1"),
        *("--analogies", str(folder / "questions-words.txt")),
        *("--wordsim", str(folder / "wordsim353.tsv"), "--simlex", str(folder / "simlex999.txt")),
    ]


@pytest.mark.parametrize("kernel", ["fused", "torch"])
def test_word2vec_card(tmp_path, hub, kernel):
    out = tmp_path / "run"
    report = word2vec_recipe.main(
        [
            *word_files(tmp_path),
            *("--dim", "8", "--window", "2", "--sample", "0", "--kernel", kernel),
            *("--epochs", "1", "--batch_size", "256", "--lr", "0.05"),
            *("--output_dir", str(out), "--push_to_hub", "fake-user/w2v", *QUIET),
        ]
    )
    assert report["kernel"] == kernel
    folder = out / "model"
    index = model_index(folder)
    assert index == {  # each score under its own evaluation set, not the training corpus
        ("word-analogy", "google-analogy", None): {"accuracy": report["analogy"]},
        ("word-similarity", "wordsim353", None): {"spearman": report["ws353"]},
        ("word-similarity", "simlex999", None): {"spearman": report["simlex999"]},
    }
    assert metadata(folder)["datasets"] == ["corpus.txt"]  # what it was trained on
    names = {r["dataset"]: r for r in results(folder)}
    assert {"Google analogy test set (questions-words)", "WordSim-353", "SimLex-999"} == set(names)
    before = report["random_init"]
    check_baseline(
        folder,
        {
            ("Google analogy test set (questions-words)", "accuracy"): before["analogy"],
            ("WordSim-353", "spearman"): before["ws353"],
            ("SimLex-999", "spearman"): before["simlex999"],
        },
    )
    text = (folder / "README.md").read_text()
    assert "sigmoid (logistic) loss" in text and "InfoNCE" not in text
    assert ("fused kernel" in text) == (kernel == "fused")
    assert ("torch kernel" in text) == (kernel == "torch")
    params = hyperparameters(folder)
    assert params["epochs"] == "1" and params["lr"] == "0.05" and params["batch_size"] == "256"
    assert params["kernel_used"] == kernel and params["dim"] == "8" and params["negative"] == "5"
    ns = run_usage(folder)
    assert ns["embeddings"].shape == (3, 8)
    usage = text.split("## Usage")[1]  # it ran: embeddings, then a word's neighbours
    assert (
        "most_similar(word" in usage and 'load_word2vec_format("vectors.bin", binary=True)' in usage
    )
    # vectors.bin (word2vec C format) goes up with the model; checkpoints never do
    (commit,) = hub.commits
    assert commit["files"]["vectors.bin"] == (folder / "vectors.bin").read_bytes()
    assert report["push"]["commit"] == report["hub_commit"]


def test_push_skips_pickles_named_bin(tmp_path, hub):
    from multicon.hub import push_folder
    from multicon.text import Vocabulary, Word2Vec

    w2v = Word2Vec.from_vocab(Vocabulary(["a", "b"], [2, 1]), dim=4)
    w2v.save_pretrained(tmp_path)
    (tmp_path / "README.md").write_text("---\nlibrary_name: multicon\n---\n")
    torch.save({"state": 1}, tmp_path / "vectors.bin")  # a pickle under the word2vec name
    (tmp_path / "sub").mkdir()
    w2v.save_word2vec_format(tmp_path / "sub" / "vectors.bin", binary=True)  # not at the top
    push_folder(tmp_path, "fake-user/w", token=TOKEN)
    assert sorted(hub.commits[0]["files"]) == [
        "README.md", "config.json", "model.safetensors", "vocab.txt"
    ]  # fmt: skip


# -- captions -------------------------------------------------------------------------------
def write_zero_shot_folder(root: Path) -> Path:
    """An image folder of shapes by colour (``test/<colour>/*.png``): `imagefolder` reads it."""
    rng = random.Random(3)
    for colour, shape in concepts():
        (root / "test" / colour).mkdir(parents=True, exist_ok=True)
        draw_shape(colour, shape, rng).save(root / "test" / colour / f"{shape}.png")
    return root


def test_clip_card(tmp_path, monkeypatch):
    import datasets

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf-datasets")
    captions = tmp_path / "shapes"
    train = write_shapes_jsonl(captions, "train", per_concept=1, seed=0)
    test = write_shapes_jsonl(captions, "test", per_concept=1, seed=1)
    colours = write_zero_shot_folder(tmp_path / "colours6")
    out = tmp_path / "run"
    summary = clip_recipe.main(
        [
            *("--train_data", str(train), "--test_data", str(test), "--output_dir", str(out)),
            *("--max_steps", "1", "--batch_size", "8", "--show_images", "1", *QUIET),
            *("--eval_every", "0", "--image_size", "32", "--image_arch", "vit"),
            *("--vit_width", "32", "--vit_depth", "1", "--vit_heads", "2"),
            *("--text_width", "32", "--text_depth", "1"),
            *("--text_heads", "2", "--embed_dim", "16", "--vocab_size", "60"),
            *("--max_length", "16", "--zero_shot_dataset", "imagefolder"),
            *("--zero_shot_data_dir", str(colours), "--zero_shot_image_column", "image"),
        ]
    )
    folder = out / "model"
    index = model_index(folder)
    retrieval = index.pop(("image-text-retrieval", "shapes", "test.jsonl"))
    assert retrieval == pytest.approx(summary["retrieval"], abs=0.01)
    # zero-shot is its own task on its own dataset, not a retrieval result on the captions
    assert index == {
        ("zero-shot-image-classification", "colours6", "test"): {
            "accuracy": pytest.approx(summary["zero_shot/top1"], abs=0.01)
        }
    }
    assert metadata(folder)["datasets"] == ["shapes"]
    before = summary["random_init"]
    expected = {("shapes", k): v for k, v in before.items() if "/R@" in k}
    expected[("colours6", "accuracy")] = before["zero_shot/top1"]
    check_baseline(folder, expected, abs=0.01)
    rows = dict((r["input"], r["value"]) for r in table(section(folder, "Preprocessing")))
    assert rows["input size"] == "32x32 pixels, 3 channels" and "mean" in rows
    text = (folder / "README.md").read_text()
    assert "symmetric InfoNCE" in text and "other pairs of the batch" in text
    params = hyperparameters(folder)
    assert {"lr", "batch_size", "max_steps", "embed_dim", "loss"} <= params.keys()
    ns = run_usage(folder)
    assert ns["embeddings"].shape == (2, 16) and ns["texts"].shape == (2, 16)
