"""The README's main job: SimCLR on the bundled digits, before/after kNN, a model folder."""

import json
from pathlib import Path

import torch

from multicon.encoders.small_cnn import SmallConvEncoder

ROOT = Path(__file__).resolve().parents[1]


def test_demo_learns_and_writes_a_loadable_model(tmp_path):
    from multicon.recipes import demo

    summary = demo.main(
        [
            "--output_dir",
            str(tmp_path),
            "--epochs",
            "8",
            "--width",
            "16",
            "--progress_bar",
            "false",
            "--eval_every",
            "4",
        ]
    )
    assert summary["knn_top1_trained"] > 0.9  # 10 classes: chance is 0.1
    assert json.loads((tmp_path / "summary.json").read_text()) == summary
    model_dir = tmp_path / "model"
    assert {"model.safetensors", "config.json"} <= {p.name for p in model_dir.iterdir()}
    loaded = SmallConvEncoder.from_pretrained(model_dir).eval()
    original = SmallConvEncoder(in_channels=1, width=16, proj_dim=64)
    from safetensors.torch import load_file

    original.load_state_dict(load_file(model_dir / "model.safetensors"))
    x = torch.rand(3, 1, 8, 8)
    assert torch.equal(loaded.features(x), original.eval().features(x))
