"""The SimCLR and MoCo recipes run end to end on an image folder the test writes."""

import json
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image
from textures import texture_images, write_image_folder

from multicon.encoders import ImageEncoder

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tools")]
import bench_images  # noqa: E402
import eval_images  # noqa: E402

from multicon.recipes import moco as moco_cifar10  # noqa: E402
from multicon.recipes import simclr as simclr_cifar10  # noqa: E402

TINY = [
    "--max_steps", "2", "--batch_size", "16", "--head_hidden_dim", "32", "--cifar_stem", "false",
    "--knn_k", "5", "--log_with", "", "--progress_bar", "false", "--eval_every", "1",
]  # fmt: skip


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("textures")
    write_image_folder(root / "train", texture_images(8, size=16, seed=0))
    write_image_folder(root / "test", texture_images(4, size=16, seed=1))
    return root


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py


def check_run(out: Path, summary: dict) -> None:
    assert (out / "knn_curve.png").stat().st_size > 1000
    assert (out / "retrievals.png").stat().st_size > 1000
    saved = json.loads((out / "summary.json").read_text())
    assert saved["steps"] == 2 and 0.0 <= saved["knn_top1"] <= 1.0
    assert saved["train_images"] == 32 and saved["test_images"] == 16
    card = (out / "model" / "README.md").read_text()  # the Hub model card, with the metric
    assert "library_name: multicon" in card and "type: knn_top1" in card
    encoder = ImageEncoder.from_pretrained(out / "model")
    assert encoder.features(torch.randn(2, 3, 16, 16)).shape == (2, 512)
    assert summary["knn_top1"] == saved["knn_top1"]


def test_simclr_recipe(folder, tmp_path):
    out = tmp_path / "simclr"
    summary = simclr_cifar10.main(["--data", str(folder), "--output_dir", str(out), *TINY])
    check_run(out, summary)
    # the evaluation tool on the saved encoder: same kNN as the recipe's last monitor
    result = eval_images.main(["--model", str(out / "model"), "--data", str(folder),
                               "--knn_k", "5", "--probe_epochs", "5"])  # fmt: skip
    assert result["knn_top1"] == pytest.approx(summary["knn_top1"], abs=1e-3)
    assert 0.0 <= result["linear_top1"] <= 1.0


def test_bench_tool_runs_every_mode():
    report = bench_images.main(
        ["--device", "cpu", "--image_size", "16", "--batch_size", "8", "--steps", "1",
         "--warmup", "0", "--num_workers", "0", "--cifar_stem", "false"]
    )  # fmt: skip
    assert set(report["images_per_s"]) == {"ceiling", "device_views", "cpu_views"}
    assert all(v > 0 for v in report["images_per_s"].values())
    assert report["command"].startswith("tools/bench_images.py --device cpu")


def test_moco_v2_recipe_with_cpu_views(folder, tmp_path):
    out = tmp_path / "moco"
    argv = ["--data", str(folder), "--output_dir", str(out), "--queue_size", "16"]
    summary = moco_cifar10.main([*argv, "--views_on", "cpu", *TINY, "--log_with", "jsonl"])
    check_run(out, summary)
    assert summary["views_on"] == "cpu"
    # the queue filled at step 1; step 2 logs how far its keys have drifted from this step's
    logs = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    (last,) = [r for r in logs if r.get("step") == 2 and "train/loss" in r]
    assert -1.0 <= last["train/queue_cos_old"] <= 1.0 and -1.0 <= last["train/queue_cos_new"] <= 1.0


def test_moco_v2_without_queue_scores_the_batch(folder, tmp_path):
    # --queue_size 0: the queue's ablation, the same one-way loss over the batch's momentum keys
    out = tmp_path / "moco-no-queue"
    argv = ["--data", str(folder), "--output_dir", str(out), "--queue_size", "0"]
    summary = moco_cifar10.main([*argv, *TINY])
    check_run(out, summary)
    (step,) = (out / "checkpoints").iterdir()
    state = torch.load(step / "state.pt", weights_only=False)["model"]
    assert "directions.0.keys.encoder.encoder.backbone.conv1.weight" in state  # the EMA copy
    assert not any(".queue." in name for name in state)  # no queue buffers
    with pytest.raises(ValueError, match="--queue_size must be >= 0, got -1"):
        moco_cifar10.main(["--data", str(folder), "--output_dir", str(tmp_path), *TINY,
                           "--queue_size", "-1"])  # fmt: skip


def test_moco_v3_recipe(folder, tmp_path):
    out = tmp_path / "mocov3"
    summary = moco_cifar10.main(
        ["--version", "v3", "--data", str(folder), "--output_dir", str(out), *TINY]
    )
    check_run(out, summary)
    card = (out / "model" / "README.md").read_text()  # the Hub model card, with the metric
    assert "library_name: multicon" in card and "type: knn_top1" in card
    encoder = ImageEncoder.from_pretrained(out / "model")  # the predictor is the method's
    assert not any("predictor" in name for name in encoder.state_dict())


def test_queue_smaller_than_batch(folder, tmp_path):
    with pytest.raises(ValueError, match="--queue_size 8 is smaller than the global batch of 16"):
        moco_cifar10.main(["--data", str(folder), "--output_dir", str(tmp_path),
                           "--queue_size", "8", *TINY])  # fmt: skip


def test_batch_larger_than_dataset(folder, tmp_path):
    argv = ["--data", str(folder), "--output_dir", str(tmp_path), *TINY, "--batch_size", "64"]
    with pytest.raises(ValueError, match="larger than the 32 training images"):
        simclr_cifar10.main(argv)


def test_labels_missing_for_knn(tmp_path):
    for split in ("train", "test"):
        (tmp_path / split).mkdir()
        for i in range(4):
            Image.new("RGB", (16, 16), (i * 40, 0, 0)).save(tmp_path / split / f"{i}.png")
    with pytest.raises(ValueError, match="kNN monitor .* needs class labels"):
        simclr_cifar10.main(["--data", str(tmp_path), "--output_dir", str(tmp_path / "o"), *TINY])
