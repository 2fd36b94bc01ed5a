"""False negatives: keys of other ids that are too similar to a query's own to push away.

With few training items, a large pool of negatives (a queue, or a big batch) holds near
duplicates of the positive: on 800 Flickr images, a queue of 512 captions holds several
"a dog runs through the grass" for every such image. A `RelatedIds` relation, worked out once
from a guide embedding (e.g. a frozen pretrained text model's embedding of each image's
captions, as sentence-transformers' GISTEmbedLoss uses a guide model), lists for each id the
other ids the loss should not score as its negatives; `multicon.losses.InfoNCE(related=...)` masks
them like keys of the query's own id.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

_PAD = torch.iinfo(torch.long).max  # sorts after every id, equals none


class RelatedIds(nn.Module):
    """For each id ``0 .. n-1``, the sorted ids related to it (padded rows of ``(n, k)``).

    Args:
        neighbours: list of ``n`` lists of related ids (the id itself is not needed: same-id
            keys are always masked).

    The table is a buffer that is not saved: it is derived from the data, and the model is
    whole without it.

    Example:
        >>> import torch
        >>> related = RelatedIds([[1], [0], []])
        >>> related.mask(torch.tensor([0, 2]), torch.tensor([0, 1, 2]))
        tensor([[False,  True, False],
                [False, False, False]])
    """

    def __init__(self, neighbours: list[list[int]]) -> None:
        super().__init__()
        if not neighbours:
            raise ValueError("RelatedIds needs at least one id")
        n, width = len(neighbours), max(1, max(len(row) for row in neighbours))
        table = torch.full((n, width), _PAD, dtype=torch.long)
        for i, row in enumerate(neighbours):
            if row:
                ids = torch.tensor(sorted(set(row)), dtype=torch.long)
                if ids[0] < 0 or ids[-1] >= n:
                    raise ValueError(f"id {i}'s related ids must lie in [0, {n}), got {row}")
                table[i, : len(ids)] = ids
        self.register_buffer("table", table, persistent=False)

    @classmethod
    def from_embeddings(
        cls, embeddings: torch.Tensor, threshold: float, *, max_related: int | None = None
    ) -> RelatedIds:
        """Ids ``i`` and ``j`` are related when the cosine of their rows of ``embeddings``
        ``(n, D)`` exceeds ``threshold`` (at most the ``max_related`` nearest per id).

        Example:
            >>> import torch
            >>> e = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0]])
            >>> RelatedIds.from_embeddings(e, 0.8).counts().tolist()
            [1, 1, 0]
        """
        if embeddings.dim() != 2 or len(embeddings) == 0:
            raise ValueError(
                f"embeddings must be (n, D) with n >= 1, got shape {tuple(embeddings.shape)}"
            )
        if not -1.0 <= threshold < 1.0:
            raise ValueError(f"threshold is a cosine, in [-1, 1), got {threshold}")
        if max_related is not None and max_related < 1:
            raise ValueError(f"max_related must be >= 1, got {max_related}")
        e = F.normalize(embeddings.detach().float(), dim=1)
        n = len(e)
        limit = n - 1 if max_related is None else min(max_related, n - 1)
        rows: list[list[int]] = []
        for start in range(0, n, 1024):  # (1024, n) cosines at a time
            cos = e[start : start + 1024] @ e.T
            cos[torch.arange(len(cos)), torch.arange(start, start + len(cos))] = -2.0
            if limit == 0:
                rows += [[] for _ in range(len(cos))]
                continue
            top, idx = cos.topk(limit, dim=1)
            rows += [i[t > threshold].tolist() for t, i in zip(top, idx, strict=True)]
        return cls(rows)

    def __len__(self) -> int:
        return self.table.shape[0]

    def counts(self) -> torch.Tensor:
        """``(n,)`` how many ids each id is related to."""
        return (self.table != _PAD).sum(1)

    def mask(self, query_ids: torch.Tensor, key_ids: torch.Tensor) -> torch.Tensor:
        """``(B, N)`` True where key ``j``'s id is related to query ``i``'s id.

        ``key_ids``: ``(N,)`` shared by all queries or ``(B, N)`` per query. Key ids outside
        the relation (e.g. another corpus) are related to nothing.
        """
        if query_ids.dim() != 1:
            raise ValueError(f"query_ids must be (B,), got shape {tuple(query_ids.shape)}")
        if len(query_ids) and (query_ids.min() < 0 or query_ids.max() >= len(self)):
            raise ValueError(
                f"query ids must lie in [0, {len(self)}) of the related-ids table, got "
                f"{query_ids.min().item()} .. {query_ids.max().item()}"
            )
        rows = self.table[query_ids]  # (B, k), each sorted
        keys = key_ids.expand(len(query_ids), -1) if key_ids.dim() == 1 else key_ids
        keys = keys.to(rows.dtype).contiguous()
        at = torch.searchsorted(rows, keys).clamp(max=rows.shape[1] - 1)
        return rows.gather(1, at) == keys


@torch.no_grad()
def related_by_captions(
    model, corpus, threshold: float, *, max_related: int | None = None, batch_size: int = 256
) -> RelatedIds:
    """Images whose captions a dual encoder's text backbone finds alike, as `RelatedIds`.

    Each image is the mean of its captions' normalised text features (the backbone's pooled
    output, before the trained projection), and two images are related when the cosine of those
    means exceeds ``threshold``. Meant for a frozen pretrained text tower (``freeze_text``):
    its sentence space is what says two captions describe the same kind of scene.

    Args:
        model: a `multicon.DualEncoder`.
        corpus: the `CaptionCorpus` whose image indices are the training ids.
        threshold: cosine above which two images are related (0.45 for all-MiniLM-L6-v2 on
            Flickr8k relates each image to ~4 % of the others).

    Example:
        >>> import torch
        >>> from multicon import DualEncoder
        >>> from multicon.encoders.tokenization import train_sentencepiece_tokenizer
        >>> caps = [["a red square"], ["a red box"], ["a blue circle"]]
        >>> tok = train_sentencepiece_tokenizer([c[0] for c in caps] * 9, vocab_size=30)
        >>> cfg = {"model_type": "bert", "vocab_size": len(tok), "hidden_size": 16,
        ...        "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 32}
        >>> model = DualEncoder.create({"kind": "resnet", "arch": "resnet18"}, {"config": cfg},
        ...                            tokenizer=tok, embed_dim=8, freeze_text=True)
        >>> class Corpus(list):  # what it reads of a CaptionCorpus
        ...     def flat_captions(self): return [c for cs in self for c in cs], [0, 1, 2]
        >>> corpus = Corpus(caps)
        >>> len(related_by_captions(model, corpus, 0.5))
        3
    """
    captions, owners = corpus.flat_captions()
    if not captions:
        raise ValueError("the corpus has no captions to relate its images by")
    tower = model.text
    was_training = tower.training
    tower.eval()
    try:
        feats = [
            F.normalize(tower.features(model.tokenize(captions[i : i + batch_size])), dim=1)
            for i in range(0, len(captions), batch_size)
        ]
    finally:
        tower.train(was_training)
    feats = torch.cat(feats).float().cpu()
    owner = torch.tensor(owners, dtype=torch.long)
    images = torch.zeros(len(corpus), feats.shape[1]).index_add_(0, owner, feats)
    return RelatedIds.from_embeddings(images, threshold, max_related=max_related)
