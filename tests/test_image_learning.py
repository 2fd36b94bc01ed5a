"""Learning is tested by what it learns: brief SimCLR / MoCo runs on textures lift kNN accuracy.

The classes (stripes two ways, checks, rings) differ only in pattern, with random colours, so
colour jitter and grayscale views must teach the encoder to ignore colour. Chance is 25%.
"""

import pytest
import torch
from textures import texture_images

from multicon import TrainConfig, Trainer, methods
from multicon.encoders.small_cnn import SmallConvEncoder
from multicon.eval import KNNMonitor
from multicon.pairs.images import DeviceViewPairs
from multicon.pairs.views import MoCoV2Views, SimCLRViews


@pytest.fixture(scope="module")
def textures():
    return texture_images(64, size=16, seed=0), texture_images(32, size=16, seed=1)


def train_and_measure(model, encoder, views, data, tmp_path, steps):
    train, test = data
    monitor = KNNMonitor(train, test, views, k=20)
    before = monitor(encoder)["knn_top1"]
    config = TrainConfig(
        output_dir=str(tmp_path), max_steps=steps, batch_size=64, lr=3e-3, warmup_steps=10,
        eval_every=0, checkpoint_every=10_000, log_with="", progress_bar=False, seed=0,
    )  # fmt: skip
    Trainer(model, DeviceViewPairs(train, views, seed=0), config).fit()
    after = monitor(encoder)["knn_top1"]
    print(f"kNN top-1 before {before:.3f} after {after:.3f}")
    return before, after


def test_simclr_learns_textures(one_thread, textures, tmp_path):
    torch.manual_seed(0)
    encoder = SmallConvEncoder(in_channels=3, width=16, proj_dim=32)
    model = methods.clip(encoder, encoder, 0.2, learnable=False)  # symmetric, in-batch
    views = SimCLRViews(size=16, scale=(0.25, 1.0))
    before, after = train_and_measure(model, encoder, views, textures, tmp_path, steps=300)
    assert after > 0.6, (before, after)
    assert after > before + 0.2, (before, after)


def test_moco_learns_textures(one_thread, textures, tmp_path):
    torch.manual_seed(0)
    encoder = SmallConvEncoder(in_channels=3, width=16, proj_dim=32)
    model = methods.moco_v2(encoder, 256, 32, momentum=(0.9, 1.0), temperature=0.2)
    views = MoCoV2Views(size=16, scale=(0.25, 1.0))
    before, after = train_and_measure(model, encoder, views, textures, tmp_path, steps=300)
    assert after > 0.55, (before, after)
    assert after > before + 0.2, (before, after)
