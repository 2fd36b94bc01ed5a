"""Image–caption pairs: an image and one of its captions, sampled afresh each time it is drawn.

``key_id`` is the image index, so two captions of one image are never each other's negatives
(in a batch, across processes, or in a momentum queue).
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable

import torch

from multicon.data.captions import CaptionCorpus
from multicon.encoders.tokenization import count_truncated, tokenize_batch
from multicon.pairs.base import MapPairGenerator, Pair, PairBatch

logger = logging.getLogger(__name__)


class CaptionPairs(MapPairGenerator):
    """Pairs (image tensor, caption, image index) from a `CaptionCorpus`; `collate` tokenizes.

    Args:
        corpus: images with their captions.
        tokenizer: a transformers tokenizer with a pad token.
        transform: PIL image → tensor (e.g. ``DualEncoder.image_transform(train=True)``).
        max_length: captions longer than this many tokens are truncated (default: the
            tokenizer's ``model_max_length``); how many are is counted in ``num_truncated``.

    Example:
        >>> import torch
        >>> from PIL import Image
        >>> from multicon.encoders.tokenization import train_sentencepiece_tokenizer
        >>> class Two(CaptionCorpus):
        ...     captions, skipped = [["a red square", "red"], ["a blue circle"]], {}
        ...     def _load_image(self, i): return Image.new("RGB", (4, 4), ("red", "blue")[i])
        >>> tok = train_sentencepiece_tokenizer(["a red square", "a blue circle"] * 9,
        ...                                     vocab_size=30, max_length=16)
        >>> to_tensor = lambda im: torch.tensor(list(im.getdata()), dtype=torch.float).T
        >>> pairs = CaptionPairs(Two(), tok, transform=to_tensor)
        >>> batch = pairs.collate([pairs[0], pairs[1]])
        >>> batch.query.shape, sorted(batch.key), batch.key_id.tolist()
        (torch.Size([2, 3, 16]), ['attention_mask', 'input_ids'], [0, 1])
    """

    def __init__(
        self,
        corpus: CaptionCorpus,
        tokenizer,
        *,
        transform: Callable,
        max_length: int | None = None,
    ) -> None:
        if tokenizer.pad_token is None:
            raise ValueError("the tokenizer has no pad token; captions in a batch must be padded")
        self.corpus, self.tokenizer, self.transform = corpus, tokenizer, transform
        self.max_length = max_length if max_length is not None else tokenizer.model_max_length
        texts, _ = corpus.flat_captions()
        self.num_captions = len(texts)
        self.num_truncated = count_truncated(tokenizer, texts, self.max_length)
        if self.num_truncated:
            logger.warning(
                "%d of %d captions are longer than %d tokens and will be truncated",
                self.num_truncated,
                self.num_captions,
                self.max_length,
            )

    def __len__(self) -> int:
        return len(self.corpus)

    def __getitem__(self, index: int) -> Pair:
        captions = self.corpus.captions[index]
        # the global RNG: the trainer seeds it for each pair from (seed, epoch, index)
        caption = captions[random.randrange(len(captions))]
        return Pair(self.transform(self.corpus.image(index)), caption, index)

    def collate(self, pairs: list[Pair]) -> PairBatch:
        images = torch.stack([p.query for p in pairs])
        key = tokenize_batch(self.tokenizer, [p.key for p in pairs], self.max_length)
        return PairBatch(images, key, torch.tensor([p.key_id for p in pairs], dtype=torch.long))
