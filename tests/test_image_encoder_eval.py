"""ImageEncoder save/load and options; kNN monitor, features and linear probe on their inputs."""

import pytest
import torch
from textures import texture_images, write_image_folder

from multicon import methods
from multicon.data import ImageData, load_images
from multicon.encoders import ImageEncoder, sync_batchnorm
from multicon.eval import KNNMonitor, extract_features, linear_probe
from multicon.pairs.views import SimCLRViews

SMALL = dict(arch="resnet18", cifar_stem=False, head_hidden_dim=32, out_dim=8)


def test_save_and_rebuild(tmp_path):
    enc = ImageEncoder(**SMALL).eval()
    x = torch.randn(2, 3, 16, 16)
    enc.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").is_file() and (tmp_path / "config.json").is_file()
    again = ImageEncoder.from_pretrained(tmp_path).eval()
    assert torch.allclose(enc(x), again(x)) and torch.allclose(enc.features(x), again.features(x))


def test_moco_v3_keys_skip_the_predictor_and_queries_pass_it():
    from multicon.encoders import ProjectionHead

    enc = ImageEncoder(**SMALL)
    model = methods.moco_v3(enc, ProjectionHead(8, 16, 8, num_layers=2), momentum=0.99).eval()
    x = torch.randn(3, 3, 16, 16)
    ema = model.directions[0].keys.encoder
    assert torch.allclose(ema(x), enc(x), atol=1e-6)  # same weights, no predictor
    assert not torch.allclose(model.directions[0].query(x), enc(x))


def test_channels_last_gives_same_output():
    torch.manual_seed(0)
    a = ImageEncoder(**SMALL).eval()
    b = ImageEncoder(**SMALL, channels_last=True).eval()
    b.load_state_dict(a.state_dict())
    x = torch.randn(2, 3, 16, 16)
    assert b.backbone.conv1.weight.is_contiguous(memory_format=torch.channels_last)
    assert torch.allclose(a(x), b(x), atol=1e-5)


def test_sync_batchnorm_only_on_several_gpu_processes():
    enc = ImageEncoder(**SMALL)
    assert sync_batchnorm(enc, num_processes=1) is enc
    assert sync_batchnorm(enc) is enc  # one process here
    if torch.cuda.is_available():
        converted = sync_batchnorm(enc, num_processes=2)
        assert any(isinstance(m, torch.nn.SyncBatchNorm) for m in converted.modules())


def test_encoder_rejects_bad_images():
    enc = ImageEncoder(**SMALL)
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        enc(torch.randn(2, 1, 16, 16))
    with pytest.raises(ValueError, match="float images"):
        enc(torch.zeros(2, 3, 16, 16, dtype=torch.uint8))


def test_extract_features_and_knn_monitor():
    data = texture_images(4, size=16)
    enc = ImageEncoder(**SMALL)
    feats = extract_features(enc, data, SimCLRViews(size=16), batch_size=5)
    assert feats.shape == (16, 512) and enc.training  # mode restored
    # a 24 px view config resizes 16 px images
    assert extract_features(enc, data.images[:2], SimCLRViews(size=24)).shape == (2, 512)
    metrics = KNNMonitor(data, data, SimCLRViews(size=16), k=1)(enc)
    assert metrics["knn_top1"] == 1.0  # every test image is its own nearest neighbour


def test_knn_monitor_needs_labels():
    unlabelled = ImageData(torch.zeros(4, 3, 8, 8, dtype=torch.uint8))
    labelled = ImageData(torch.zeros(4, 3, 8, 8, dtype=torch.uint8), torch.arange(4))
    with pytest.raises(ValueError, match="needs class labels"):
        KNNMonitor(unlabelled, labelled, SimCLRViews(size=8))
    with pytest.raises(ValueError, match="test split.*needs class labels"):
        KNNMonitor(labelled, unlabelled, SimCLRViews(size=8))


def test_linear_probe_learns_and_checks_inputs():
    g = torch.Generator().manual_seed(0)
    centres = torch.randn(5, 32, generator=g) * 3
    y = torch.arange(500) % 5
    x = centres[y] + torch.randn(500, 32, generator=g)
    result = linear_probe(x[:400], y[:400], x[400:], y[400:], epochs=30, batch_size=100, lr=1e-2)
    assert result["top1"] > 0.95
    shuffled = linear_probe(x[:400], y[torch.randperm(400, generator=g)], x[400:], y[400:],
                            epochs=30, batch_size=100, lr=1e-2)  # fmt: skip
    assert shuffled["top1"] < 0.5  # random labels: nothing to learn
    with pytest.raises(ValueError, match="needs train labels"):
        linear_probe(x, None, x, y)
    with pytest.raises(ValueError, match="labels of"):
        linear_probe(x, y[:10], x, y)


def test_load_images_detects_layout(tmp_path):
    write_image_folder(tmp_path / "train", texture_images(2, size=8))
    assert len(load_images(tmp_path, "train")) == 8
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_images(tmp_path / "missing", "train")
