"""Tokenizers for captions: any transformers tokenizer, or a sentencepiece one trained on them.

`train_sentencepiece_tokenizer` trains a sentencepiece unigram or BPE model on a caption corpus
(offline) and returns it as a transformers fast tokenizer that adds ``<s> … </s>`` and pads with
``<pad>``; ``save_pretrained`` writes ``tokenizer.json`` so ``AutoTokenizer.from_pretrained``
loads it back with no sentencepiece model file.
"""

from __future__ import annotations

import json
import re
import tempfile
from collections.abc import Iterable
from pathlib import Path

#: pad, unk, <s>, </s> and at least one piece
MIN_VOCAB_SIZE = 5


def auto_tokenizer(name_or_path: str | Path):
    """``AutoTokenizer.from_pretrained`` that never runs a repository's code.

    transformers is told ``trust_remote_code=False`` (so it neither asks nor imports), and a
    local ``tokenizer_config.json`` that names custom classes (``auto_map``) is refused with a
    `ValueError` naming the file.

    Example:
        >>> tok = train_sentencepiece_tokenizer(["a red square", "a blue circle"] * 20,
        ...                                     vocab_size=30, max_length=8)
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as d:
        ...     _ = tok.save_pretrained(d)
        ...     auto_tokenizer(d)("a red circle")["input_ids"] == tok("a red circle")["input_ids"]
        True
    """
    from transformers import AutoTokenizer

    config = Path(name_or_path) / "tokenizer_config.json"
    if config.is_file():
        try:
            auto_map = json.loads(config.read_text(encoding="utf-8")).get("auto_map")
        except (ValueError, AttributeError) as err:
            raise ValueError(f"{config} is not a JSON object: {err}") from None
        if auto_map:
            raise ValueError(
                f"{config} asks to run code (auto_map {auto_map!r}); multicon never runs code "
                "from a model folder: use a tokenizer that transformers itself provides"
            )
    return AutoTokenizer.from_pretrained(str(name_or_path), trust_remote_code=False)


def load_tokenizer(name_or_path: str | Path, *, max_length: int | None = None):
    """A transformers tokenizer from a local folder or Hub id, truncating at ``max_length``.

    Example:
        >>> tok = train_sentencepiece_tokenizer(["a red square", "a blue circle"] * 20,
        ...                                     vocab_size=30, max_length=8)
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as d:
        ...     _ = tok.save_pretrained(d)
        ...     load_tokenizer(d)("a red circle")["input_ids"] == tok("a red circle")["input_ids"]
        True
    """
    path = Path(name_or_path)
    if str(name_or_path).startswith((".", "/")) and not path.exists():
        raise FileNotFoundError(f"tokenizer folder {path} does not exist")
    tokenizer = auto_tokenizer(name_or_path)
    if max_length is not None:
        tokenizer.model_max_length = max_length
    if tokenizer.pad_token is None:
        raise ValueError(
            f"tokenizer {name_or_path} has no pad token; captions in a batch must be padded"
        )
    return tokenizer


def train_sentencepiece_tokenizer(
    texts: Iterable[str],
    *,
    vocab_size: int = 4000,
    model_type: str = "unigram",
    max_length: int = 64,
    lowercase: bool = True,
):
    """Train a sentencepiece ``unigram`` or ``bpe`` model on ``texts``; return it as a
    transformers tokenizer (ids: 0 pad, 1 unk, 2 ``<s>``, 3 ``</s>``).

    ``vocab_size`` is an upper bound: a small corpus gets the largest vocabulary it supports.
    Its lower bound is every distinct character of the captions plus the 4 special tokens.

    Example:
        >>> tok = train_sentencepiece_tokenizer(["a red square", "a blue circle"] * 20,
        ...                                     vocab_size=30, max_length=8)
        >>> ids = tok("a red square")["input_ids"]
        >>> ids[0] == tok.bos_token_id and ids[-1] == tok.eos_token_id
        True
    """
    import sentencepiece as spm
    from tokenizers import processors
    from transformers import PreTrainedTokenizerFast

    if vocab_size < MIN_VOCAB_SIZE:
        raise ValueError(
            f"vocab_size must be at least {MIN_VOCAB_SIZE} (4 special tokens and one piece), "
            f"got {vocab_size}"
        )
    if model_type not in ("unigram", "bpe"):
        raise ValueError(f"sentencepiece model_type must be 'unigram' or 'bpe', got {model_type!r}")
    texts = [t.strip() for t in texts if t and t.strip()]
    if not texts:
        raise ValueError("cannot train a tokenizer on an empty corpus: no non-empty caption given")
    with tempfile.TemporaryDirectory() as work:
        corpus = Path(work) / "corpus.txt"
        corpus.write_text("\n".join(t.replace("\n", " ") for t in texts) + "\n", encoding="utf-8")
        _train_sentencepiece(
            spm,
            vocab_size,
            input=str(corpus),
            model_prefix=str(Path(work) / "tokenizer"),
            hard_vocab_limit=False,
            model_type=model_type,
            character_coverage=1.0,
            normalization_rule_name="nmt_nfkc_cf" if lowercase else "nmt_nfkc",
            pad_id=0,
            unk_id=1,
            bos_id=2,
            eos_id=3,
            pad_piece="<pad>",
            minloglevel=2,
        )
        folder = Path(work) / "spm"
        folder.mkdir()
        (Path(work) / "tokenizer.model").rename(folder / "tokenizer.model")
        backend = _from_sentencepiece_model(folder)
    backend.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", special_tokens=[("<s>", 2), ("</s>", 3)]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token="<s>",
        eos_token="</s>",
        unk_token="<unk>",
        pad_token="<pad>",
        model_max_length=max_length,
    )


def _train_sentencepiece(spm, vocab_size: int, **options) -> None:
    """``SentencePieceTrainer.train``, with its INTERNAL error for a vocabulary smaller than
    the alphabet said in words."""
    try:
        spm.SentencePieceTrainer.train(vocab_size=vocab_size, **options)
    except RuntimeError as err:
        need = re.search(r"smaller than required_chars\. \d+ vs (\d+)", str(err))
        if need is None:
            raise
        raise ValueError(
            f"vocab_size {vocab_size} is too small for these captions: their distinct "
            f"characters and the 4 special tokens need at least {need.group(1)}"
        ) from None


def _from_sentencepiece_model(folder: Path):
    """The `tokenizers.Tokenizer` equivalent of ``folder/tokenizer.model`` (transformers ≥ 5)."""
    try:
        from transformers import TokenizersBackend
    except ImportError as err:  # transformers 4 has no generic sentencepiece conversion
        raise ImportError("training a sentencepiece tokenizer needs transformers >= 5") from err
    return TokenizersBackend.from_pretrained(str(folder)).backend_tokenizer


def tokenize_batch(tokenizer, texts: list[str], max_length: int | None) -> dict:
    """A batch of captions as padded ``input_ids`` and ``attention_mask`` tensors, truncated at
    ``max_length``: the text side of every caption `PairBatch`.

    Example:
        >>> tok = train_sentencepiece_tokenizer(["a red square", "a blue circle"] * 20,
        ...                                     vocab_size=30, max_length=8)
        >>> sorted(tokenize_batch(tok, ["a red square", "red"], 8))
        ['attention_mask', 'input_ids']
    """
    tokens = tokenizer(
        texts,
        padding=True,
        truncation=True,
        max_length=max_length,
        return_tensors="pt",
        verbose=False,
    )
    return {"input_ids": tokens["input_ids"], "attention_mask": tokens["attention_mask"]}


def count_truncated(tokenizer, texts: list[str], max_length: int | None = None) -> int:
    """How many of ``texts`` are longer than ``max_length`` tokens (default: the tokenizer's).

    Example:
        >>> tok = train_sentencepiece_tokenizer(["a red square", "a blue circle"] * 20,
        ...                                     vocab_size=30, max_length=6)
        >>> count_truncated(tok, ["a red square", "red"])
        1
    """
    limit = max_length if max_length is not None else tokenizer.model_max_length
    if not texts:
        return 0
    lengths = tokenizer(texts, truncation=False, verbose=False)["input_ids"]
    return sum(len(ids) > limit for ids in lengths)
