"""User-written pair generators train end to end and learn."""

import importlib.util
import sys
from pathlib import Path

import torch

import multicon

ROOT = Path(__file__).resolve().parents[1]


def load_tool(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def test_docs_custom_generator_page_runs_and_learns():
    ns = load_tool("run_doc").run(ROOT / "docs" / "custom-generators.md")
    assert ns["after"] > 0.3 > ns["before"]  # chance is 0.005


class RotatedBars(multicon.BatchPairGenerator):
    """Batch-style, on the device: two noisy, shifted renderings of a bar at one of 8 angles.

    key_id is the angle class, so renderings of the same angle are never negatives of each other.
    """

    def __init__(self, n: int, seed: int = 0):
        self.seed = seed
        self.labels = torch.arange(n) % 8

    def num_pairs(self):
        return len(self.labels)

    def render(self, labels, g):
        angle = labels.float() * torch.pi / 8
        ys, xs = torch.meshgrid(torch.linspace(-1, 1, 12), torch.linspace(-1, 1, 12), indexing="ij")
        shift = 0.3 * (torch.rand(len(labels), 2, generator=g) - 0.5)
        x = xs - shift[:, :1, None]
        y = ys - shift[:, 1:, None]
        dist = (x * angle.sin()[:, None, None] - y * angle.cos()[:, None, None]).abs()
        img = (dist < 0.15).float() + 0.3 * torch.randn(len(labels), 12, 12, generator=g)
        return img.flatten(1)

    def batches(self, batch_size, *, epoch, device, rank=0, world_size=1):
        g = self.rng(epoch)
        order = torch.randperm(len(self.labels), generator=g)
        for idx in self.shard(order, batch_size, rank, world_size):
            labels = self.labels[idx]
            yield multicon.PairBatch(
                self.render(labels, g).to(device), self.render(labels, g).to(device), idx.to(device)
            )


def test_batch_style_custom_generator_learns_above_chance(tmp_path):
    torch.manual_seed(0)
    encoder = torch.nn.Sequential(
        torch.nn.Linear(144, 64), torch.nn.ReLU(), torch.nn.Linear(64, 32)
    )
    model = multicon.methods.clip(encoder, encoder, 0.2, learnable=False)  # symmetric, in-batch
    data = RotatedBars(512)
    g = torch.Generator().manual_seed(99)
    test_labels = torch.arange(200) % 8
    bank_labels = torch.arange(400) % 8
    test_x, bank_x = data.render(test_labels, g), data.render(bank_labels, g)

    def knn(_=None):
        with torch.no_grad():
            return multicon.knn_accuracy(
                encoder(bank_x), bank_labels, encoder(test_x), test_labels, k=10
            )

    config = multicon.TrainConfig(
        output_dir=str(tmp_path),
        epochs=12,
        batch_size=64,
        lr=3e-3,
        log_with="jsonl",
        progress_bar=False,
        eval_every=6,
    )
    result = multicon.Trainer(model, data, config, evaluate=lambda m: {"knn": knn(m)}).fit()
    assert [e["epoch"] for e in result.evaluations] == [6, 12]
    assert result.evaluations[-1]["knn"] > 0.6  # chance is 0.125
    assert (tmp_path / "metrics.jsonl").read_text().count("train/loss") >= 5


def test_concepts_page_runs():
    load_tool("run_doc").run(ROOT / "docs" / "concepts.md")
