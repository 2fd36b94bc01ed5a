"""Every recipe kind leaves its pictures beside the model: a tiny run of each, each PNG opened."""

import json
import random
from pathlib import Path

import pytest
from caption_fixtures import write_shapes_jsonl
from PIL import Image
from textures import texture_images, write_image_folder

from multicon.eval.plots import plot_training_curves


def check_picture(path: Path) -> None:
    """A PNG that PIL reads, of a readable size, with something drawn on it (not one flat
    colour: at least 2% of its pixels differ from its corner's colour)."""
    assert path.is_file(), f"{path.name} was not written"
    with Image.open(path) as img:
        assert img.format == "PNG"
        assert img.width >= 300 and img.height >= 100, (path.name, img.size)
        rgb = img.convert("RGB")
        background = rgb.getpixel((0, 0))
        pixels = list(rgb.getdata())
    drawn = sum(p != background for p in pixels) / len(pixels)
    assert drawn > 0.02, f"{path.name} is nearly blank ({drawn:.1%} drawn)"


def check_figures(out: Path, summary: dict, expected: set[str]) -> None:
    assert set(summary["figures"]) == expected
    for name in expected:
        check_picture(out / name)


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py


QUIET = ["--log_with", "", "--progress_bar", "false"]
IMAGE_FIGURES = {"training.png", "knn_curve.png", "retrievals.png", "embedding_map.png"}


def test_image_recipe_draws_curves_neighbours_and_a_map(tmp_path):
    from multicon.recipes import simclr

    write_image_folder(tmp_path / "data" / "train", texture_images(8, size=16, seed=0))
    write_image_folder(tmp_path / "data" / "test", texture_images(4, size=16, seed=1))
    out = tmp_path / "run"
    summary = simclr.main(
        [
            *("--data", str(tmp_path / "data"), "--output_dir", str(out), "--max_steps", "3"),
            *("--batch_size", "16", "--head_hidden_dim", "32", "--cifar_stem", "false"),
            *("--knn_k", "5", "--log_every", "1", *QUIET),
        ]
    )
    check_figures(out, summary, IMAGE_FIGURES)
    assert json.loads((out / "summary.json").read_text())["figures"] == summary["figures"]
    # a run shorter than an epoch: its kNN curve has the random-init point and the last step
    assert [e["step"] for e in summary["knn_curve"]] == [0, 3]


def test_demo_draws_the_image_pictures(tmp_path):
    from multicon.recipes import demo

    summary = demo.main(
        ["--output_dir", str(tmp_path), "--epochs", "1", "--width", "8", "--log_every", "1", *QUIET]
    )
    check_figures(tmp_path, summary, IMAGE_FIGURES)


def _corpus(tmp_path: Path) -> Path:
    rng = random.Random(3)
    lines = [" ".join(f"t{t % 8}w{rng.randrange(4)}" for _ in range(10)) for t in range(400)]
    (tmp_path / "corpus.txt").write_text("\n".join(lines) + "\n")
    return tmp_path / "corpus.txt"


def _word2vec_argv(tmp_path: Path, *extra: str) -> list[str]:
    return [
        *("--corpus", str(_corpus(tmp_path)), "--min_count", "1", "--dim", "8", "--epochs", "2"),
        *("--batch_size", "256", "--output_dir", str(tmp_path / "run"), "--log_every", "2"),
        *("--analogies", "", "--wordsim", "", "--simlex", "", "--sample", "0", *QUIET, *extra),
    ]


def test_word2vec_draws_a_neighbour_table_and_a_word_map(tmp_path):
    from multicon.recipes import word2vec

    report = word2vec.main(_word2vec_argv(tmp_path, "--show_words", "t0w0", "t3w1"))
    out = tmp_path / "run"
    check_figures(out, report, {"training.png", "word_neighbours.png", "word_map.png"})
    assert json.loads((out / "report.json").read_text())["figures"] == report["figures"]


def test_word2vec_names_an_unknown_show_word_before_training(tmp_path):
    from multicon.recipes import word2vec

    with pytest.raises(ValueError, match="--show_words: not in the vocabulary: nosuchword"):
        word2vec.main(_word2vec_argv(tmp_path, "--show_words", "t0w0", "nosuchword"))
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_clip_draws_curves_a_recall_table_and_retrievals(tmp_path):
    from multicon.recipes import clip

    train = write_shapes_jsonl(tmp_path, "train", per_concept=1, seed=0)
    test = write_shapes_jsonl(tmp_path, "test", per_concept=1, seed=1)
    out = tmp_path / "run"
    summary = clip.main(
        [
            *("--train_data", str(train), "--test_data", str(test), "--output_dir", str(out)),
            *("--max_steps", "2", "--batch_size", "8", "--show_images", "2", "--log_every", "1"),
            *("--image_size", "32", "--text_width", "32", "--text_depth", "1"),
            *("--text_heads", "2", "--embed_dim", "16", "--vocab_size", "60"),
            *("--max_length", "16", *QUIET),
        ]
    )
    check_figures(out, summary, {"training.png", "recall_table.png", "top3_captions.png"})


def test_training_curves_need_a_logged_step(tmp_path):
    with pytest.raises(ValueError, match="no logged training step"):
        plot_training_curves([{"eval": 1.0, "step": 3, "knn_top1": 0.5}], tmp_path / "t.png")
