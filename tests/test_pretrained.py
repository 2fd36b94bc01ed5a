"""A transformers CLIPModel / SiglipModel folder fine-tuned as a multicon dual encoder.

Each test builds tiny random-initialised models and a word-level tokenizer offline and saves
them to tmp_path as ``save_pretrained`` would write a downloaded model; nothing is downloaded.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from caption_fixtures import COLOURS, SHAPES, TEMPLATES, draw_shape, write_shapes_jsonl

from multicon.encoders.dual import DualEncoder
from multicon.encoders.dual_args import DualEncoderArgs
from multicon.encoders.pretrained import (
    export_transformers,
    image_text_logits,
    load_pretrained,
    pretrained_family,
)
from multicon.recipes import clip as clip_recipe

LENGTH = 16  # the tiny text models' positions
MEAN, STD = [0.4, 0.45, 0.5], [0.2, 0.25, 0.3]  # not any family's default: read from the folder
BERT = {"model_type": "bert", "vocab_size": 64, "hidden_size": 16, "num_attention_heads": 2}
TEXTS = ["a red circle", "there is a blue square here", "white triangle on black"]


def tiny_tokenizer():
    """A word-level fast tokenizer over the fixture captions and the zero-shot prompts."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    words = {w for t in TEMPLATES for w in t.replace("{c}", "").replace("{s}", "").split()}
    words |= {*COLOURS, *SHAPES, "photo", "picture", "image", "an", "of", "the", "."}
    vocab = {"<pad>": 0, "<unk>": 1, "<s>": 2, "</s>": 3}
    vocab |= {w: i + 4 for i, w in enumerate(sorted(words))}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    backend.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", special_tokens=[("<s>", 2), ("</s>", 3)]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token="<s>",
        eos_token="</s>",
        unk_token="<unk>",
        pad_token="<pad>",
        model_max_length=LENGTH,
    )


def save_tiny(family: str, folder, seed: int = 0):
    """A tiny random CLIPModel or SiglipModel, its tokenizer and image processor in ``folder``."""
    from transformers import (
        CLIPConfig,
        CLIPImageProcessor,
        CLIPModel,
        SiglipConfig,
        SiglipImageProcessor,
        SiglipModel,
    )

    tokenizer = tiny_tokenizer()
    shape = {"hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1}
    shape["num_attention_heads"] = 2
    text = {"vocab_size": len(tokenizer), "max_position_embeddings": LENGTH, **shape}
    text |= {"pad_token_id": 0, "bos_token_id": 2, "eos_token_id": 3}
    vision = {"image_size": 32, "patch_size": 8, **shape}
    torch.manual_seed(seed)
    if family == "clip":
        model = CLIPModel(CLIPConfig(text_config=text, vision_config=vision, projection_dim=8))
        processor = CLIPImageProcessor(
            size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}
        )
    else:
        model = SiglipModel(SiglipConfig(text_config=text, vision_config=vision))
        with torch.no_grad():  # SigLIP's own start: t = 10, b = -10 (random ones otherwise)
            model.logit_scale.fill_(2.3)
            model.logit_bias.fill_(-10.0)
        processor = SiglipImageProcessor(size={"height": 32, "width": 32})
    processor.image_mean, processor.image_std = MEAN, STD
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    processor.save_pretrained(folder)
    return model.eval(), tokenizer


def hf_outputs(hf, tokenizer, images: torch.Tensor, texts: list[str]):
    """The transformers model's features and logits, its inputs made as its processor does:
    CLIP's captions padded to the longest with a mask, SigLIP's to the full length without."""
    siglip = type(hf).__name__.startswith("Siglip")
    tokens = tokenizer(texts, padding="max_length" if siglip else True, return_tensors="pt")
    ids, mask = tokens["input_ids"], None if siglip else tokens["attention_mask"]
    with torch.no_grad():
        image = hf.get_image_features(pixel_values=images).pooler_output
        text = hf.get_text_features(input_ids=ids, attention_mask=mask).pooler_output
        logits = hf(input_ids=ids, attention_mask=mask, pixel_values=images).logits_per_image
    return image, text, logits


def multicon_outputs(model: DualEncoder, images: torch.Tensor, texts: list[str]):
    model.eval()
    with torch.no_grad():
        return (
            model.encode_image(images, normalize=False),
            model.encode_text(texts, normalize=False),
            image_text_logits(model, images, texts),
        )


def assert_same(ours, theirs, atol=1e-5):
    for a, b in zip(ours, theirs, strict=True):
        assert a.shape == b.shape and torch.allclose(a, b, atol=atol, rtol=0), (a - b).abs().max()


@pytest.mark.parametrize("family", ["clip", "siglip"])
def test_loading_keeps_the_models_outputs(tmp_path, family):
    hf, tokenizer = save_tiny(family, tmp_path / family)
    model = load_pretrained(tmp_path / family)
    images = torch.randn(2, 3, 32, 32)
    assert_same(multicon_outputs(model, images, TEXTS), hf_outputs(hf, tokenizer, images, TEXTS))
    assert model.image_size == 32 and model.tokenizer.model_max_length == LENGTH
    assert model.image_mean == pytest.approx(MEAN) and model.image_std == pytest.approx(STD)
    assert (model.logit_bias is not None) == (family == "siglip")
    # saved and loaded back as a multicon model: the same outputs
    model.save_pretrained(tmp_path / "saved")
    again = DualEncoder.from_pretrained(tmp_path / "saved")
    assert_same(multicon_outputs(again, images, TEXTS), hf_outputs(hf, tokenizer, images, TEXTS))


def odd_shaped_images():
    """Noise images, tall and wide: the resize's filter and geometry both show, and the crop's
    rounding (a short-side resize to 32 leaves margins of 16, 8, 19 and 19 pixels)."""
    from PIL import Image

    rng = np.random.default_rng(0)
    shapes = ((60, 40), (40, 50), (64, 40), (40, 64))
    return [Image.fromarray(rng.integers(0, 256, (*hw, 3), dtype=np.uint8)) for hw in shapes]


def assert_prepares_images_as(model: DualEncoder, processor_folder) -> None:
    """``model.image_transform()`` gives the pixels the transformers processor saved in
    ``processor_folder`` gives, for images of other sizes and aspects than the model's."""
    from transformers import AutoImageProcessor

    processor = AutoImageProcessor.from_pretrained(processor_folder)
    images = odd_shaped_images()
    theirs = processor(images, return_tensors="pt")["pixel_values"]
    ours = torch.stack([model.image_transform()(image) for image in images])
    assert ours.shape == theirs.shape and torch.allclose(ours, theirs, atol=1e-5, rtol=0), (
        (ours - theirs).abs().max()
    )


@pytest.mark.parametrize("family", ["clip", "siglip"])
def test_pil_images_are_prepared_as_the_models_processor_prepares_them(tmp_path, family, caplog):
    hf, _ = save_tiny(family, tmp_path / family)
    model = load_pretrained(tmp_path / family)
    assert "framed" not in caplog.text
    assert model.image_interpolation == "bicubic"
    assert model.image_resize == ("shortest_edge" if family == "clip" else "square")
    assert_prepares_images_as(model, tmp_path / family)
    # so a list of PIL images embeds as the transformers model embeds its processor's pixels
    from transformers import AutoImageProcessor

    pixels = AutoImageProcessor.from_pretrained(tmp_path / family)(
        odd_shaped_images(), return_tensors="pt"
    )["pixel_values"]
    with torch.no_grad():
        theirs = hf.get_image_features(pixel_values=pixels).pooler_output
        ours = model.eval().encode_image(odd_shaped_images(), normalize=False)
    assert torch.allclose(ours, theirs, atol=1e-5, rtol=0)
    # kept when saved as a multicon model, and written back by the transformers export
    model.save_pretrained(tmp_path / "saved")
    again = DualEncoder.from_pretrained(tmp_path / "saved")
    assert (again.image_resize, again.image_interpolation) == (
        model.image_resize,
        model.image_interpolation,
    )
    export_transformers(again, tmp_path / "exported")
    assert_prepares_images_as(again, tmp_path / "exported")


def test_processor_settings_multicon_cannot_follow_are_named(tmp_path, caplog):
    """Another framing (resize, then a smaller crop) is a warning; another filter, an error."""
    save_tiny("clip", tmp_path / "clip")
    path = tmp_path / "clip" / "preprocessor_config.json"
    saved = json.loads(path.read_text())
    path.write_text(json.dumps({**saved, "size": {"shortest_edge": 36}}))  # 36, then crop 32
    load_pretrained(tmp_path / "clip")
    assert "resizes to {'shortest_edge': 36} and crops 32" in caplog.text
    path.write_text(json.dumps({**json.loads(path.read_text()), "resample": 1}))  # LANCZOS
    with pytest.raises(ValueError, match="preprocessor_config.json: resample 1"):
        load_pretrained(tmp_path / "clip")
    towers = ({"kind": "resnet", "arch": "resnet18"}, {"config": BERT})
    with pytest.raises(ValueError, match="image_resize must be 'shortest_edge' or 'square'"):
        DualEncoder(*towers, image_resize="crop")
    with pytest.raises(ValueError, match="image_interpolation must be 'bilinear' or 'bicubic'"):
        DualEncoder(*towers, image_interpolation="lanczos")


def test_siglip_pads_captions_to_the_length_it_was_trained_on(tmp_path):
    """SigLIP pools the last position: a caption padded to the batch's longest must embed as
    one padded to the full length, as its processor pads (padding="max_length")."""
    save_tiny("siglip", tmp_path / "siglip")
    model = load_pretrained(tmp_path / "siglip").eval()
    short = model.tokenize(["a red circle"])
    full = model.tokenizer(["a red circle"], padding="max_length", return_tensors="pt")
    assert short["input_ids"].shape[1] < LENGTH
    with torch.no_grad():
        assert torch.allclose(model.encode_text(short), model.encode_text(dict(full)), atol=1e-6)


def recipe_args(tmp_path, pretrained, *extra: str) -> list[str]:
    train = write_shapes_jsonl(tmp_path, "train", per_concept=1, seed=0)
    test = write_shapes_jsonl(tmp_path, "test", per_concept=1, seed=1)
    return [
        "--pretrained",
        str(pretrained),
        "--train_data",
        str(train),
        "--test_data",
        str(test),
        "--output_dir",
        str(tmp_path / "run"),
        "--max_steps",
        "2",
        "--batch_size",
        "8",
        "--lr",
        "1e-3",
        "--warmup_steps",
        "0",
        "--max_length",
        str(LENGTH),
        "--show_images",
        "1",
        "--log_with",
        "",
        "--progress_bar",
        "false",
        *extra,
    ]


def write_zero_shot(folder) -> None:
    """A labelled image set in parquet (one colour per class), as `--zero_shot_dataset
    parquet --zero_shot_data_dir` reads it."""
    import random

    import datasets

    rng = random.Random(3)
    colours = list(COLOURS)
    rows = [(draw_shape(c, s, rng), k) for k, c in enumerate(colours) for s in SHAPES]
    features = datasets.Features(
        {"img": datasets.Image(), "label": datasets.ClassLabel(names=colours)}
    )
    ds = datasets.Dataset.from_dict(
        {"img": [r[0] for r in rows], "label": [r[1] for r in rows]}, features=features
    )
    folder.mkdir()
    ds.to_parquet(str(folder / "test-00000-of-00001.parquet"))


@pytest.mark.parametrize("family", ["clip", "siglip"])
def test_recipe_fine_tunes_reports_before_and_after_and_exports(tmp_path, family):
    from transformers import CLIPModel, SiglipModel

    hf, tokenizer = save_tiny(family, tmp_path / family)
    zero_shot = []
    if family == "clip":  # one code path for both families: once is enough (it takes seconds)
        write_zero_shot(tmp_path / "zs")
        zero_shot = ["--zero_shot_dataset", "parquet", "--zero_shot_data_dir", str(tmp_path / "zs")]
    summary = clip_recipe.main(recipe_args(tmp_path, tmp_path / family, *zero_shot))
    out = tmp_path / "run"

    # the model's own loss by default; before and after on the same test data
    assert summary["loss"] == ("infonce" if family == "clip" else "siglip")
    before = summary["before_finetuning"]
    assert set(before) == {*summary["retrieval"], *(["zero_shot/top1"] if zero_shot else [])}
    assert ("zero_shot/top1" in summary) == bool(zero_shot)
    original = load_pretrained(tmp_path / family)
    test = clip_recipe.open_captions(str(tmp_path / "test.jsonl"))
    recall = clip_recipe.retrieval_recall(*clip_recipe.embed_corpus(original, test))
    assert before["image_to_text/R@1"] == round(recall["image_to_text/R@1"], 2)
    card = (out / "model" / "README.md").read_text()
    # the card's baseline column holds the pretrained model's scores, named as such
    assert "| before fine-tuning |" in card and "random init" not in card
    row = next(line for line in card.splitlines() if "`image_to_text/R@1`" in line)
    shown = float(row.strip(" |").split("|")[-1])
    assert shown == pytest.approx(before["image_to_text/R@1"], abs=0.01)

    # fine-tuning changed the outputs; the saved model and its transformers export agree
    images = torch.randn(3, 3, 32, 32)
    tuned = DualEncoder.from_pretrained(out / "model")
    ours = multicon_outputs(tuned, images, TEXTS)
    pretrained = hf_outputs(hf, tokenizer, images, TEXTS)
    assert all((a - b).abs().max() > 1e-3 for a, b in zip(ours, pretrained, strict=True))
    exported = (CLIPModel if family == "clip" else SiglipModel).from_pretrained(
        out / "transformers"
    )
    assert_same(ours, hf_outputs(exported.eval(), tokenizer, images, TEXTS))
    if family == "siglip":
        assert summary["logit_bias"] == pytest.approx(exported.logit_bias.item(), abs=1e-4)
        assert summary["logit_bias"] != -10.0  # the pretrained bias learned
    saved = json.loads((out / "transformers" / "preprocessor_config.json").read_text())
    assert saved["image_mean"] == pytest.approx(MEAN) and saved["image_std"] == pytest.approx(STD)
    assert_prepares_images_as(tuned, out / "transformers")


@pytest.mark.parametrize(
    "extra",
    [
        ["--queue_size", "8"],  # ALBEF: momentum towers and queues
        ["--queue_size", "8", "--freeze_text", "--feature_queues", "true"],
        ["--grad_cache_chunk", "4"],
        ["--freeze_image"],
    ],
    ids=["queue", "feature-queue", "grad-cache", "frozen-image"],
)
def test_the_engine_fine_tunes_a_pretrained_clip(tmp_path, extra):
    hf, _ = save_tiny("clip", tmp_path / "clip")
    summary = clip_recipe.main(recipe_args(tmp_path, tmp_path / "clip", *extra))
    assert summary["steps"] == 2 and summary["before_finetuning"]
    tuned = DualEncoder.from_pretrained(tmp_path / "run" / "model")
    ours = tuned.image.backbone.state_dict()
    moved = max((ours[k] - v).abs().max().item() for k, v in hf.vision_model.state_dict().items())
    assert (moved == 0.0) == ("--freeze_image" in extra)  # a frozen tower stays as it was
    assert not torch.equal(tuned.image.projection.weight, hf.visual_projection.weight)


def test_siglip_model_with_infonce(tmp_path):
    """--loss overrides the model's own: a SigLIP fine-tuned with InfoNCE keeps its bias."""
    hf, _ = save_tiny("siglip", tmp_path / "siglip")
    summary = clip_recipe.main(recipe_args(tmp_path, tmp_path / "siglip", "--loss", "infonce"))
    assert summary["loss"] == "infonce" and "logit_bias" not in summary
    tuned = DualEncoder.from_pretrained(tmp_path / "run" / "model")
    assert tuned.logit_bias.item() == pytest.approx(hf.logit_bias.item())
    assert tuned.temperature != pytest.approx(torch.exp(-hf.logit_scale).item(), abs=1e-6)


def test_a_folder_of_another_model_is_refused_with_what_it_holds(tmp_path):
    from transformers import BertConfig, BertModel, CLIPVisionConfig, CLIPVisionModel

    shape = {"hidden_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2}
    shape["intermediate_size"] = 32
    BertModel(BertConfig(vocab_size=30, **shape)).save_pretrained(tmp_path / "bert")
    with pytest.raises(ValueError, match=r"bert.*holds a model_type 'bert' \(BertModel\)"):
        DualEncoderArgs(pretrained=str(tmp_path / "bert"))
    CLIPVisionModel(CLIPVisionConfig(**shape)).save_pretrained(tmp_path / "vision")
    with pytest.raises(ValueError, match=r"vision.*'clip_vision_model'.*one tower alone"):
        load_pretrained(tmp_path / "vision")
    save_tiny("clip", tmp_path / "clip")
    for name in ("tokenizer.json", "tokenizer_config.json"):
        (tmp_path / "clip" / name).unlink()
    with pytest.raises(FileNotFoundError, match="clip has no tokenizer"):
        load_pretrained(tmp_path / "clip")
    with pytest.raises(FileNotFoundError, match="no such folder"):
        pretrained_family(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="empty has no config.json"):
        DualEncoderArgs(pretrained=str(tmp_path / "empty"))


def test_flags_that_clash_with_a_pretrained_model(tmp_path):
    save_tiny("clip", tmp_path / "clip")
    with pytest.raises(ValueError, match="drop --text_model"):
        DualEncoderArgs(pretrained=str(tmp_path / "clip"), text_model="bert-base-uncased")
    with pytest.raises(ValueError, match="its image processor: drop --image_interpolation"):
        DualEncoderArgs(pretrained=str(tmp_path / "clip"), image_interpolation="bilinear")
    with pytest.raises(ValueError, match=f"--max_length 40 is more than the {LENGTH} positions"):
        load_pretrained(tmp_path / "clip", max_length=40)
    bert = {"model_type": "bert", "vocab_size": 30, "hidden_size": 16, "num_hidden_layers": 1}
    bert |= {"num_attention_heads": 2, "intermediate_size": 32}
    scratch = DualEncoder({"kind": "resnet", "arch": "resnet18"}, {"config": bert}, embed_dim=8)
    with pytest.raises(ValueError, match="only a model loaded with --pretrained"):
        export_transformers(scratch, tmp_path / "x")
