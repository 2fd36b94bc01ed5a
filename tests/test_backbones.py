"""Image backbones by name (torchvision, transformers, timm) and the normalisation that fits them.

Every model here is small and random-initialised: nothing is downloaded.
"""

from __future__ import annotations

import json
import shutil
import sys

import pytest
import torch
from textures import texture_images, write_image_folder
from torch import nn

from multicon.encoders import ImageEncoder
from multicon.encoders.backbones import build_backbone, parse_backbone, pretrained_stats
from multicon.encoders.dual import DualEncoder
from multicon.encoders.dual_args import DualEncoderArgs, build_dual_encoder
from multicon.encoders.normalize import (
    choose_normalization,
    corpus_stats,
    sample_indices,
    tensor_stats,
)
from multicon.recipes import simclr as simclr_recipe

TINY = dict(hidden_size=16, num_hidden_layers=1, num_attention_heads=2)
HF_CONFIGS = {
    "vit": dict(image_size=32, patch_size=8, intermediate_size=32, **TINY),
    "dinov2": dict(image_size=32, patch_size=8, mlp_ratio=2, **TINY),
    "clip_vision_model": dict(image_size=32, patch_size=8, intermediate_size=32, **TINY),
    "siglip_vision_model": dict(image_size=32, patch_size=8, intermediate_size=32, **TINY),
}
PROCESSOR = {"image_mean": [0.4, 0.5, 0.6], "image_std": [0.2, 0.25, 0.3]}


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest.py


def hf_folder(root, model_type: str, processor: bool = True, **overrides):
    """A random-initialised transformers vision model saved as a folder; the model too."""
    from transformers import AutoConfig, AutoModel

    torch.manual_seed(0)
    config = AutoConfig.for_model(model_type, **{**HF_CONFIGS[model_type], **overrides})
    model = AutoModel.from_config(config).eval()
    folder = root / model_type
    model.save_pretrained(folder)
    if processor:
        (folder / "preprocessor_config.json").write_text(json.dumps(PROCESSOR))
    return folder, model


# -- torchvision ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "name, size, feature_dim",
    [
        ("resnet18", 32, 512),
        ("mobilenet_v3_small", 32, 1024),  # the classifier's hidden layer stays
        ("efficientnet_b0", 32, 1280),
        ("convnext_tiny", 32, 768),
        ("vit_b_16", 224, 768),
    ],
)
def test_torchvision_classifier_is_removed_and_its_feature_size_found(name, size, feature_dim):
    backbone = build_backbone(f"torchvision:{name}")
    assert backbone.feature_dim == feature_dim and backbone.stats is None
    assert not any(
        isinstance(m, nn.Linear) and m.out_features == 1000 for m in backbone.module.modules()
    )
    backbone.module.eval()
    with torch.no_grad():
        assert backbone.module(torch.randn(1, 3, size, size)).shape == (1, feature_dim)


def test_cifar_stem_stays_for_resnets_only():
    net = build_backbone("resnet18", cifar_stem=True).module
    assert net.conv1.kernel_size == (3, 3) and net.conv1.stride == (1, 1)
    assert isinstance(net.maxpool, nn.Identity)
    with pytest.raises(ValueError, match="--cifar_stem .*convnext_tiny has no such stem"):
        build_backbone("torchvision:convnext_tiny", cifar_stem=True)
    # the encoder's default: the stem for ResNets, the backbone's own for others
    assert ImageEncoder("resnet18", head_hidden_dim=8, out_dim=4)._hub_mixin_config["cifar_stem"]
    enc = ImageEncoder("torchvision:mobilenet_v3_small", head_hidden_dim=8, out_dim=4)
    assert enc._hub_mixin_config["cifar_stem"] is False and enc.feature_dim == 1024


@pytest.mark.parametrize(
    "spec, close",
    [
        ("torchvision:convnxt_tiny", "convnext_tiny"),
        ("resnet19", "resnet18"),
        ("torchvision:mobilenet_v3_smal", "mobilenet_v3_small"),
    ],
)
def test_unknown_name_lists_close_matches(spec, close):
    with pytest.raises(ValueError, match=f"unknown torchvision model .*close matches: .*{close}"):
        build_backbone(spec)


def test_unknown_family_and_weights_are_named():
    with pytest.raises(ValueError, match="unknown backbone family 'tf'"):
        parse_backbone("tf:resnet18")
    with pytest.raises(ValueError, match="--backbone_weights of resnet18.*IMAGENET1K_V1"):
        build_backbone("resnet18", weights="IMAGENET1K_V2")


def test_torchvision_weights_bring_their_stats_without_a_download():
    stats = pretrained_stats("torchvision:resnet18", "IMAGENET1K_V1")
    assert stats["mean"] == pytest.approx([0.485, 0.456, 0.406])
    assert stats["std"] == pytest.approx([0.229, 0.224, 0.225])
    assert "ResNet18_Weights.IMAGENET1K_V1" in stats["source"]
    assert pretrained_stats("torchvision:resnet18") is None  # random init: no stats


# -- transformers --------------------------------------------------------------------------------
@pytest.mark.parametrize("model_type", sorted(HF_CONFIGS))
def test_hf_folder_loads_its_weights_and_pools_as_its_model_card(tmp_path, model_type):
    folder, reference = hf_folder(tmp_path, model_type)
    backbone = build_backbone(f"hf:{folder}")
    assert backbone.feature_dim == 16
    assert backbone.stats == {**{k[6:]: v for k, v in PROCESSOR.items()},
                              "source": f"image processor of {model_type}"}  # fmt: skip
    assert backbone.saved["arch"] == "hf" and str(tmp_path) not in json.dumps(backbone.saved)
    x = torch.randn(2, 3, 32, 32)
    backbone.module.eval()
    with torch.no_grad():
        expected = reference(pixel_values=x).pooler_output  # ViT/CLIP/DINOv2/SigLIP's pooled
        assert torch.allclose(backbone.module(x), expected, atol=1e-6)
        # another image size: position embeddings are interpolated
        assert backbone.module(torch.randn(1, 3, 16, 16)).shape == (1, 16)


def test_hf_without_pooler_output_takes_the_mean_of_its_tokens(tmp_path):
    folder, reference = hf_folder(tmp_path, "siglip_vision_model", vision_use_head=False)
    backbone = build_backbone(f"hf:{folder}")
    x = torch.randn(2, 3, 32, 32)
    backbone.module.eval()
    with torch.no_grad():
        tokens = reference(pixel_values=x).last_hidden_state
        assert torch.allclose(backbone.module(x), tokens.mean(dim=1), atol=1e-6)


def test_hf_config_json_starts_random_without_stats(tmp_path):
    from transformers import AutoConfig

    file = tmp_path / "dinov2.json"
    AutoConfig.for_model("dinov2", **HF_CONFIGS["dinov2"]).to_json_file(file)
    backbone = build_backbone(f"hf:{file}")
    assert backbone.feature_dim == 16 and backbone.stats is None
    assert pretrained_stats(f"hf:{file}") is None


def test_hf_image_text_folder_gives_its_vision_tower(tmp_path):
    from transformers import CLIPConfig, CLIPModel

    torch.manual_seed(0)
    text = dict(vocab_size=64, intermediate_size=32, **TINY)
    config = CLIPConfig(text_config=text, vision_config=HF_CONFIGS["clip_vision_model"])
    clip = CLIPModel(config).eval()
    clip.save_pretrained(tmp_path / "clip")
    backbone = build_backbone(f"hf:{tmp_path / 'clip'}")
    backbone.module.eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        expected = clip.vision_model(pixel_values=x).pooler_output
        assert torch.allclose(backbone.module(x), expected, atol=1e-6)


def test_hf_folder_of_a_text_model_is_refused_naming_it(tmp_path):
    from transformers import BertConfig, BertModel

    BertModel(BertConfig(vocab_size=32, intermediate_size=32, **TINY)).save_pretrained(
        tmp_path / "bert"
    )
    with pytest.raises(ValueError, match=f"{tmp_path / 'bert'} holds a 'bert' model.*not images"):
        build_backbone(f"hf:{tmp_path / 'bert'}")
    with pytest.raises(FileNotFoundError, match="no such folder"):
        build_backbone(f"hf:{tmp_path / 'missing'}")


# -- timm ----------------------------------------------------------------------------------------
def test_timm_model_by_name():
    pytest.importorskip("timm")
    backbone = build_backbone("timm:resnet18")
    assert backbone.feature_dim == 512 and backbone.stats is None
    with torch.no_grad():
        assert backbone.module.eval()(torch.randn(1, 3, 32, 32)).shape == (1, 512)
    with pytest.raises(ValueError, match="unknown timm model .*close matches: .*resnet18"):
        build_backbone("timm:resnet19")


def test_missing_timm_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "timm", None)  # import timm raises ImportError
    with pytest.raises(ImportError, match="pip install timm"):
        build_backbone("timm:resnet18")


# -- normalisation -------------------------------------------------------------------------------
def true_stats(images: torch.Tensor) -> tuple[list[float], list[float]]:
    x = images.double().div(255).transpose(0, 1).reshape(3, -1)
    return x.mean(1).tolist(), x.std(1, unbiased=False).tolist()


def test_tensor_stats_are_the_true_per_channel_stats():
    images = texture_images(6, size=12, seed=3).images
    stats = tensor_stats(images)
    mean, std = true_stats(images)
    assert stats["mean"] == pytest.approx(mean, abs=1e-6)
    assert stats["std"] == pytest.approx(std, abs=1e-6)
    assert stats["source"] == "training split (all 24 images)"
    sampled = tensor_stats(images, max_images=5)  # a bounded, evenly spread sample
    assert true_stats(images[sample_indices(24, 5)]) == (
        pytest.approx(sampled["mean"], abs=1e-6),
        pytest.approx(sampled["std"], abs=1e-6),
    )
    assert sampled["source"] == "training split (5 of 24 images, evenly spread)"


def test_corpus_stats_read_the_caption_images(tmp_path):
    from caption_fixtures import write_shapes_jsonl

    from multicon.data.caption_sources import open_captions

    corpus = open_captions(str(write_shapes_jsonl(tmp_path, "train", per_concept=1, seed=0)))
    stats = corpus_stats(corpus, 32)  # the shapes are drawn at 32 px: no resampling
    images = torch.stack(
        [torch.from_numpy(__import__("numpy").array(corpus.image(i))).permute(2, 0, 1)
         for i in range(len(corpus))]
    )  # fmt: skip
    mean, std = true_stats(images)
    assert stats["mean"] == pytest.approx(mean, abs=1e-5)
    assert stats["std"] == pytest.approx(std, abs=1e-5)
    # the same images streamed from tar shards: the first ones, here all of them
    from multicon.data.caption_stream import CaptionShardStream
    from multicon.data.shards import write_shards

    stream = CaptionShardStream(write_shards(corpus, tmp_path / "shards", samples_per_shard=7))
    assert corpus_stats(stream, 32) == stats
    first = corpus_stats(stream, 32, max_images=5)
    assert first["mean"] == pytest.approx(true_stats(images[:5])[0], abs=1e-5)
    assert first["source"] == "training split (5 of 18 images, the first)"


def test_normalize_flag_picks_pretrained_data_named_or_given():
    pretrained = {"mean": [0.1] * 3, "std": [0.2] * 3, "source": "weights"}
    data = {"mean": [0.3] * 3, "std": [0.4] * 3, "source": "data"}
    assert choose_normalization("auto", pretrained, lambda: data) == pretrained
    assert choose_normalization("auto", None, lambda: data) == data
    assert choose_normalization("data", pretrained, lambda: data) == data
    assert choose_normalization("cifar10", None, lambda: data)["mean"] == [0.4914, 0.4822, 0.4465]
    given = choose_normalization("0.5,0.5,0.5/0.1,0.2,0.3", None, lambda: data)
    assert given == {"mean": [0.5] * 3, "std": [0.1, 0.2, 0.3], "source": "--normalize"}
    with pytest.raises(ValueError, match="no pretrained statistics"):
        choose_normalization("pretrained", None, lambda: data)
    with pytest.raises(ValueError, match="--normalize '0.5/0.1'"):
        choose_normalization("0.5/0.1", None, lambda: data)


# -- saved models ----------------------------------------------------------------------------------
def test_image_encoder_with_an_hf_backbone_saves_config_not_path(tmp_path):
    folder, _ = hf_folder(tmp_path, "dinov2")
    stats = pretrained_stats(f"hf:{folder}")
    enc = ImageEncoder(f"hf:{folder}", head_hidden_dim=8, out_dim=4, normalize=stats).eval()
    enc.save_pretrained(tmp_path / "saved")
    shutil.rmtree(folder)  # loading needs nothing but the saved folder
    config = json.loads((tmp_path / "saved" / "config.json").read_text())
    assert config["arch"] == "hf" and config["hf_config"]["model_type"] == "dinov2"
    assert config["normalize"] == stats and str(folder) not in json.dumps(config)
    loaded = ImageEncoder.from_pretrained(tmp_path / "saved")
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(loaded.features(x), enc.features(x))
    assert loaded.normalize == stats


def test_dual_encoder_with_a_backbone_tower_loads_back(tmp_path):
    folder, _ = hf_folder(tmp_path, "clip_vision_model")
    args = DualEncoderArgs(backbone=f"hf:{folder}", image_size=32, text_width=32, text_depth=1,
                           text_heads=2, embed_dim=8, vocab_size=60)  # fmt: skip
    stats = pretrained_stats(args.backbone)
    model = build_dual_encoder(args, ["a red square", "a blue circle"] * 9, 16, stats).eval()
    model.save_pretrained(tmp_path / "saved")
    shutil.rmtree(folder)
    config = json.loads((tmp_path / "saved" / "config.json").read_text())
    assert config["image_tower"]["kind"] == "backbone" and config["image_tower"]["arch"] == "hf"
    assert config["normalize"] == stats and config["image_mean"] == PROCESSOR["image_mean"]
    loaded = DualEncoder.from_pretrained(tmp_path / "saved")
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(loaded.encode_image(x), model.encode_image(x))
    assert loaded.image_mean == tuple(PROCESSOR["image_mean"])


# -- recipes -------------------------------------------------------------------------------------
SMALL = ["--image_size", "32", "--text_width", "32", "--text_depth", "1", "--text_heads", "2",
         "--embed_dim", "16", "--vocab_size", "60", "--max_length", "16"]  # fmt: skip
RECIPE = [
    "--max_steps", "2", "--batch_size", "16", "--head_hidden_dim", "32", "--knn_k", "5",
    "--log_with", "", "--progress_bar", "false", "--eval_every", "1",
]  # fmt: skip


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("textures")
    write_image_folder(root / "train", texture_images(8, size=16, seed=0))
    write_image_folder(root / "test", texture_images(4, size=16, seed=1))
    return root


def test_simclr_trains_a_torchvision_backbone_normalised_by_the_data(folder, tmp_path):
    out = tmp_path / "run"
    argv = ["--data", str(folder), "--output_dir", str(out),
            "--backbone", "torchvision:mobilenet_v3_small", *RECIPE]  # fmt: skip
    summary = simclr_recipe.main(argv)
    assert summary["steps"] == 2
    mean, std = true_stats(texture_images(8, size=16, seed=0).images)
    assert summary["normalize"]["mean"] == pytest.approx(mean, abs=1e-6)
    assert summary["normalize"]["std"] == pytest.approx(std, abs=1e-6)
    assert list(summary["query_views"]["mean"]) == summary["normalize"]["mean"]
    encoder = ImageEncoder.from_pretrained(out / "model")
    assert encoder.normalize == summary["normalize"] and encoder.feature_dim == 1024
    assert "mobilenet_v3_small" in (out / "model" / "README.md").read_text()


def test_simclr_trains_an_hf_backbone_with_its_own_stats(folder, tmp_path):
    hf, _ = hf_folder(tmp_path, "dinov2", image_size=16)
    out = tmp_path / "run"
    argv = ["--data", str(folder), "--output_dir", str(out), "--backbone", f"hf:{hf}", *RECIPE]
    summary = simclr_recipe.main(argv)
    assert summary["steps"] == 2
    assert summary["normalize"]["mean"] == PROCESSOR["image_mean"]
    assert summary["normalize"]["source"] == "image processor of dinov2"
    encoder = ImageEncoder.from_pretrained(out / "model")
    assert encoder.features(torch.randn(2, 3, 16, 16)).shape == (2, 16)


def test_caption_recipe_trains_an_hf_image_tower(tmp_path):
    from caption_fixtures import write_shapes_jsonl

    from multicon.recipes import clip as clip_recipe

    hf, _ = hf_folder(tmp_path, "vit", processor=False)
    train = write_shapes_jsonl(tmp_path, "train", per_concept=1, seed=0)
    test = write_shapes_jsonl(tmp_path, "test", per_concept=1, seed=1)
    out = tmp_path / "run"
    summary = clip_recipe.main(
        ["--train_data", str(train), "--test_data", str(test), "--output_dir", str(out),
         "--backbone", f"hf:{hf}", "--max_steps", "2", "--batch_size", "8",
         "--show_images", "1", "--log_with", "", "--progress_bar", "false", *SMALL]
    )  # fmt: skip
    assert summary["steps"] == 2
    # a random-initialised tower: the statistics of the training images
    from multicon.data.caption_sources import open_captions

    expected = corpus_stats(open_captions(str(train)), 32)
    assert summary["normalize"] == expected
    model = DualEncoder.from_pretrained(out / "model")
    assert model.normalize == expected and list(model.image_mean) == expected["mean"]
    assert model.encode_image(torch.randn(2, 3, 32, 32)).shape == (2, 16)
