"""The methods multicon ships, each a named composition of directions, key sources and a loss.

Every function returns a `ContrastiveModel` the `Trainer` takes as it is. A new method is a new
composition of `multicon.keys` and `multicon.losses`, not a new code path.

Example:
    >>> import torch
    >>> from multicon import methods
    >>> from multicon.pairs.base import PairBatch
    >>> model = methods.simclr(torch.nn.Linear(4, 8), temperature=0.5)
    >>> x = torch.randn(6, 4)
    >>> model(PairBatch(x, x + 0.01 * torch.randn(6, 4), torch.arange(6))).loss.shape
    torch.Size([])
"""

from __future__ import annotations

import torch
from torch import nn

from multicon.encoders.tower import Tower
from multicon.false_negatives import RelatedIds
from multicon.keys import (
    BatchKeys,
    Chain,
    FeatureQueue,
    KeyQueue,
    LogQCorrection,
    MomentumEncoder,
    NoiseKeys,
    OtherQueries,
    PositiveAndQueue,
    noise_weights,
    output_dim,
)
from multicon.losses import InfoNCE, SigmoidLoss
from multicon.model import ContrastiveModel, Direction, Distillation
from multicon.text.word2vec import Word2Vec

Momentum = float | tuple[float, float]


def simclr(encoder: nn.Module, temperature: float = 0.5) -> ContrastiveModel:
    """SimCLR's NT-Xent (Chen et al. 2020): both views are queries; each is scored against the
    other views and the other queries of the global batch, 2B - 2 negatives per view."""
    return ContrastiveModel(
        [
            Direction(encoder, Chain(BatchKeys(encoder), OtherQueries())),
            Direction(encoder, Chain(BatchKeys(encoder), OtherQueries()), reverse=True),
        ],
        InfoNCE(temperature),
    )


def moco_v2(
    encoder: nn.Module,
    queue_size: int,
    dim: int,
    momentum: Momentum = 0.99,
    temperature: float = 0.2,
    *,
    symmetric: bool = False,
) -> ContrastiveModel:
    """MoCo v2 (He et al. 2020; Chen et al. 2020): keys from an EMA copy of the encoder; each
    query is scored against its own key and a queue of ``queue_size`` past keys (while the
    queue is empty, the global batch). ``queue_size=0``: the batch's momentum keys instead (the
    queue's ablation). ``symmetric``: also swap the views (one queue, filled once a step)."""
    if queue_size < 0:
        raise ValueError(f"queue_size must be >= 0, got {queue_size}")
    ema = MomentumEncoder(encoder, momentum)
    if queue_size:
        keys = PositiveAndQueue(KeyQueue(BatchKeys(ema), queue_size, dim))
    else:
        keys = BatchKeys(ema)
    directions = [Direction(encoder, keys)]
    if symmetric:
        directions.append(Direction(encoder, keys, reverse=True))
    return ContrastiveModel(directions, InfoNCE(temperature))


def moco_v3(
    encoder: nn.Module, predictor: nn.Module, momentum: Momentum = 0.99, temperature: float = 0.2
) -> ContrastiveModel:
    """MoCo v3 (Chen et al. 2021): queries through the encoder and a predictor, keys from an EMA
    copy of the encoder (no predictor), symmetric over the global batch, no queue."""
    query = nn.Sequential(encoder, predictor)
    keys = BatchKeys(MomentumEncoder(encoder, momentum))
    return ContrastiveModel(
        [Direction(query, keys), Direction(query, keys, reverse=True)], InfoNCE(temperature)
    )


def clip(
    image_encoder: nn.Module,
    text_encoder: nn.Module,
    temperature: float = 0.07,
    learnable: bool = True,
    *,
    related: RelatedIds | None = None,
    logit_scale: torch.Tensor | None = None,
) -> ContrastiveModel:
    """CLIP (Radford et al. 2021): symmetric InfoNCE over the global batch of image–text
    pairs, with a learnable temperature (logit scale clamped at 100). The two encoders may be
    one module (a symmetric in-batch loss over two views). ``related``: ids whose keys are not
    scored as each other's negatives (`multicon.related_by_captions`). ``logit_scale``: a
    ``log(1/τ)`` tensor to share instead of a new one (a `DualEncoder`'s ``log_logit_scale``,
    so the saved model keeps its learned temperature; it then sets τ and whether it learns)."""
    _check_same_dim(image_encoder, text_encoder)
    return ContrastiveModel(
        [
            Direction(image_encoder, BatchKeys(text_encoder)),
            Direction(text_encoder, BatchKeys(image_encoder), reverse=True),
        ],
        _clip_loss(temperature, learnable, related, logit_scale),
    )


def siglip(
    image_encoder: nn.Module,
    text_encoder: nn.Module,
    temperature: float = 10.0,
    bias: float = -10.0,
    learnable: bool = True,
    *,
    related: RelatedIds | None = None,
    logit_scale: torch.Tensor | None = None,
    logit_bias: torch.Tensor | None = None,
) -> ContrastiveModel:
    """SigLIP (Zhai et al. 2023): every image–text pair of the global batch is an independent
    binary label (its own caption 1, every other 0), scored ``σ(t · cos(x, y) + b)``; the loss
    sums over the texts and averages over the images, ``-Σ_ij log σ(z_ij (t x_i·y_j + b)) / B``.

    ``temperature`` is the paper's ``t``, which *multiplies* the cosine (the inverse of CLIP's
    τ): learned as ``t' = log t`` from ``log 10``, clamped at 100; ``bias`` is ``b``, from -10
    (so the B - 1 negatives start near a loss of zero). The loss is symmetric in images and
    texts, so it is one direction over all B × B pairs, not two. ``learnable=False`` keeps
    both fixed. ``related``: ids whose pairs are left out as false negatives.
    ``logit_scale``: a ``log t`` tensor to share instead of a new one (a `DualEncoder`'s
    ``log_logit_scale``, so the saved model keeps its learned ``t``; it then sets ``t`` and
    whether it learns). ``logit_bias``: likewise a ``b`` tensor to share (a pretrained
    SigLIP's, held by its `DualEncoder`); ``bias`` is then unused.

    Example:
        >>> import torch
        >>> from multicon.pairs.base import PairBatch
        >>> model = siglip(torch.nn.Linear(6, 4), torch.nn.Linear(3, 4))
        >>> batch = PairBatch(torch.randn(5, 6), torch.randn(5, 3), torch.arange(5))
        >>> model(batch).loss.shape, len(model.directions)
        (torch.Size([]), 1)
    """
    _check_same_dim(image_encoder, text_encoder)
    loss = SigmoidLoss(
        "mean",
        logit_scale=temperature,
        bias=bias,
        learnable=learnable,
        normalize=True,
        related=related,
        log_logit_scale=logit_scale,
        shared_bias=logit_bias,
    )
    return ContrastiveModel([Direction(image_encoder, BatchKeys(text_encoder))], loss)


def albef(
    image_encoder: nn.Module,
    text_encoder: nn.Module,
    queue_size: int,
    dim: int,
    momentum: Momentum | None = 0.995,
    distill: float = 0.4,
    *,
    temperature: float = 0.07,
    learnable: bool = True,
    online_batch_keys: bool = False,
    related: RelatedIds | None = None,
    logit_scale: torch.Tensor | None = None,
) -> ContrastiveModel:
    """ALBEF's image–text contrastive loss (Li et al. 2021): CLIP whose keys come from EMA
    copies of both towers, each direction also scoring a queue of ``queue_size`` past keys,
    with momentum distillation (``distill``, 0 for none).

    ``online_batch_keys``: this step's keys from the online towers with gradient (as CLIP),
    only the queues from the EMA copies. ``momentum=None``: no EMA copies at all, the queues
    hold the online towers' keys (cross-batch memory, Wang et al. 2020); no distillation.
    """
    if queue_size < 1:
        raise ValueError(f"queue_size must be >= 1, got {queue_size}")
    _check_same_dim(image_encoder, text_encoder)
    if momentum is None:
        if distill:
            raise ValueError("distill needs momentum towers (the teacher): give momentum")
        ema_image, ema_text = image_encoder, text_encoder
    else:
        ema_image = MomentumEncoder(image_encoder, momentum)
        ema_text = MomentumEncoder(text_encoder, momentum)
    if distill and online_batch_keys:
        raise ValueError(
            "distill scores the teacher on the momentum keys: online_batch_keys replaces them"
        )
    batch_image = image_encoder if online_batch_keys else ema_image
    batch_text = text_encoder if online_batch_keys else ema_text
    to_text = Chain(BatchKeys(batch_text), KeyQueue(BatchKeys(ema_text), queue_size, dim))
    to_image = Chain(
        BatchKeys(batch_image),
        KeyQueue(BatchKeys(ema_image), queue_size, dim, name="reverse_queue"),
    )
    teacher = Distillation([ema_image, ema_text], distill) if distill else None
    return ContrastiveModel(
        [Direction(image_encoder, to_text), Direction(text_encoder, to_image, reverse=True)],
        _clip_loss(temperature, learnable, related, logit_scale),
        distill=teacher,
    )


def clip_feature_queue(
    image_encoder: nn.Module,
    text_encoder: nn.Module,
    queue_size: int,
    temperature: float = 0.07,
    learnable: bool = True,
    *,
    related: RelatedIds | None = None,
    logit_scale: torch.Tensor | None = None,
) -> ContrastiveModel:
    """CLIP where each locked tower's keys are also scored from a queue of its backbone
    features, re-projected through its current projection every step (`FeatureQueue`: exact
    keys, no momentum copy); a trained tower's direction keeps in-batch keys."""
    _check_same_dim(image_encoder, text_encoder)
    locked = [t for t in (image_encoder, text_encoder) if isinstance(t, Tower) and t.frozen]
    if not locked:
        raise ValueError(
            "image_encoder / text_encoder: a feature queue needs a locked tower (a Tower with "
            "frozen=True, e.g. freeze_text)"
        )

    def keys(tower: nn.Module, name: str):
        if tower in locked:
            return Chain(BatchKeys(tower), FeatureQueue(tower, queue_size, name=name))
        return BatchKeys(tower)

    return ContrastiveModel(
        [
            Direction(image_encoder, keys(text_encoder, "feature_queue")),
            Direction(text_encoder, keys(image_encoder, "reverse_feature_queue"), reverse=True),
        ],
        _clip_loss(temperature, learnable, related, logit_scale),
    )


def sgns(
    word2vec: Word2Vec,
    negative: int = 5,
    ns_exponent: float = 0.75,
    *,
    shared_negatives: int = 0,
    noise_group: int | None = None,
) -> ContrastiveModel:
    """word2vec's skip-gram with negative sampling (Mikolov et al. 2013): centre word (input
    table) → context word (output table) against ``negative`` noise words per pair from
    ``counts ** ns_exponent``, the sigmoid loss summed over pairs (plain SGD then makes
    word2vec's update). ``shared_negatives=K`` draws ``K`` noise words for every
    ``noise_group`` consecutive pairs (``None``: the whole batch), weighted ``negative / K``
    (the same expected gradient), scored with one batched matrix product."""
    if negative < 1:
        raise ValueError(f"negative must be >= 1, got {negative}")
    if shared_negatives < 0:
        raise ValueError(f"shared_negatives must be >= 0, got {shared_negatives}")
    if noise_group is not None and not shared_negatives:
        raise ValueError("noise_group needs shared_negatives > 0 (noise keys per draw)")
    noise = NoiseKeys(
        word2vec.output_embeddings,
        word2vec.require_vocab().counts,
        k=shared_negatives or negative,
        ns_exponent=ns_exponent,
        group_size=noise_group if shared_negatives else 1,
    )
    weight = negative / shared_negatives if shared_negatives else 1.0
    return ContrastiveModel(
        [Direction(word2vec.input_embeddings, noise)],
        SigmoidLoss("sum", negative_weight=weight),
    )


def word2vec_infonce(
    word2vec: Word2Vec,
    temperature: float = 0.1,
    *,
    queue_size: int = 0,
    key_freq: torch.Tensor | None = None,
    ns_exponent: float = 0.75,
) -> ContrastiveModel:
    """word2vec's pairs scored by InfoNCE over the batch's context words (and a queue of
    ``queue_size`` past ones, from the output table), cosine scores at ``temperature``.
    ``key_freq`` (``ContextPairs.key_frequencies()``): the logQ correction towards
    ``counts ** ns_exponent`` (Bengio & Senécal 2008), so the frequency-biased negatives
    estimate word2vec's noise distribution."""
    table = word2vec.output_embeddings
    keys = BatchKeys(table)
    if queue_size:
        keys = Chain(keys, KeyQueue(BatchKeys(table), queue_size, table.dim))
    if key_freq is not None:
        target = noise_weights(word2vec.require_vocab().counts, ns_exponent)
        keys = LogQCorrection(keys, key_freq, target)
    return ContrastiveModel([Direction(word2vec.input_embeddings, keys)], InfoNCE(temperature))


def _clip_loss(
    temperature: float,
    learnable: bool,
    related: RelatedIds | None,
    logit_scale: torch.Tensor | None,
) -> InfoNCE:
    return InfoNCE(
        temperature,
        learnable=learnable,
        max_logit_scale=100.0,
        related=related,
        log_logit_scale=logit_scale,
    )


def _check_same_dim(image_encoder: nn.Module, text_encoder: nn.Module) -> None:
    """Two towers must embed into one space: refuse sizes they declare and that differ."""
    a, b = output_dim(image_encoder), output_dim(text_encoder)
    if a is not None and b is not None and a != b:
        raise ValueError(
            f"image_encoder and text_encoder embed to {a} and {b}: they must share one size"
        )
