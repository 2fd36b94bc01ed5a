"""What the caption recipe and its benchmark share: the training model its flags describe."""

from __future__ import annotations

from multicon import methods
from multicon.encoders.dual import DualEncoder
from multicon.encoders.dual_args import DualEncoderArgs
from multicon.false_negatives import RelatedIds
from multicon.model import ContrastiveModel


def build_contrastive_model(
    model: DualEncoder, args: DualEncoderArgs, related: RelatedIds | None = None
) -> ContrastiveModel:
    """The method ``args`` name over ``model``'s towers, sharing its temperature: SigLIP
    (``loss="siglip"``: its scale ``t`` is the dual encoder's ``1/τ``), CLIP (``queue_size``
    0), ALBEF's queues of ``queue_size`` keys from momentum towers (``distill``: its momentum
    distillation) or, with ``momentum_towers`` false, from the online towers (XBM); with
    ``feature_queues``, a locked tower's queue of features (`FeatureQueue`).

    Example:
        >>> from multicon.encoders.dual_args import build_dual_encoder
        >>> args = DualEncoderArgs(text_width=32, text_depth=1, text_heads=2, embed_dim=16,
        ...                        queue_size=8, momentum_towers=False)
        >>> model = build_dual_encoder(args, ["a red square", "a blue circle"] * 9, 16)
        >>> cm = build_contrastive_model(model, args)
        >>> [type(d.keys).__name__ for d in cm.directions]
        ['Chain', 'Chain']
    """
    towers = dict(related=related, logit_scale=model.log_logit_scale)
    if args.loss == "siglip":  # DualEncoderArgs refused queues with it
        return methods.siglip(
            model.image,
            model.text,
            bias=args.logit_bias,
            learnable=args.learn_temperature,
            logit_bias=model.logit_bias,  # a pretrained SigLIP's (None: a new one)
            **towers,
        )
    if args.queue_size <= 0:
        if args.distill or args.feature_queues:
            name = "--distill" if args.distill else "--feature_queues"
            raise ValueError(f"{name} needs a queue: give --queue_size > 0")
        return methods.clip(model.image, model.text, **towers)
    if args.feature_queues:
        if args.distill or args.online_batch_keys:
            raise ValueError(
                "--feature_queues use no momentum towers: --distill and --online_batch_keys "
                "need them"
            )
        return methods.clip_feature_queue(model.image, model.text, args.queue_size, **towers)
    momentum = (args.key_momentum, args.key_momentum_final) if args.momentum_towers else None
    return methods.albef(
        model.image,
        model.text,
        args.queue_size,
        model.embed_dim,
        momentum,
        args.distill,
        online_batch_keys=args.online_batch_keys,
        **towers,
    )
