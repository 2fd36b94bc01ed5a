"""Towers whose features are a transformers model's own pooled output (``pooler_output``).

CLIP's and SigLIP's towers pool the way they were trained: CLIP's vision model takes the
class token after its last LayerNorm, its text model the end-of-text token; SigLIP's vision
model has an attention-pooling head, its text model takes the last position (of a caption padded
to the full length) through a linear head. These towers keep that pooling, so a pretrained
model's features come out unchanged; `multicon.encoders.pretrained` loads whole models into them.

``projection="linear"`` is CLIP's learned projection to the shared space (``visual_projection``,
``text_projection``: a bias-free ``Linear``, as every `Tower`'s). SigLIP has none: its pooled
outputs already share one space, so ``projection="identity"`` fixes the projection at the
identity (never trained, so the model still exports as a ``SiglipModel``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from multicon.encoders.hf_models import build_transformer, code_free_params
from multicon.encoders.tower import Tower

PROJECTIONS = ("linear", "identity")
# tower models AutoModel does not map (SigLIP's text model), by model_type
_TOWER_CLASSES = {
    "siglip_text_model": "SiglipTextModel",
    "siglip_vision_model": "SiglipVisionModel",
}


def build_tower_model(config: dict[str, Any]):
    """A randomly initialised transformers tower model from its config dict (AutoModel, or
    the class of a tower AutoModel does not map, e.g. ``SiglipTextModel``).

    Example:
        >>> cfg = {"model_type": "siglip_text_model", "vocab_size": 50, "hidden_size": 16,
        ...        "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 32}
        >>> type(build_tower_model(cfg)).__name__
        'SiglipTextModel'
    """
    name = _TOWER_CLASSES.get(config.get("model_type"))
    if name is None:
        return build_transformer(config)
    import transformers
    from transformers import AutoConfig

    cfg = AutoConfig.for_model(config["model_type"], **code_free_params(config))
    return getattr(transformers, name)(cfg)


class _PooledTower(Tower):
    def __init__(
        self, config: dict[str, Any], *, embed_dim: int, projection: str, frozen: bool
    ) -> None:
        if projection not in PROJECTIONS:
            raise ValueError(f"projection must be one of {PROJECTIONS}, got {projection!r}")
        model = build_tower_model(config)
        # SigLIP's text head maps to projection_size; every other pooled output is hidden_size
        feature_dim = getattr(model.config, "projection_size", None) or model.config.hidden_size
        if projection == "identity" and feature_dim != embed_dim:
            raise ValueError(
                f"an identity projection keeps the {feature_dim} pooled features: embed_dim must "
                f"be {feature_dim}, got {embed_dim}"
            )
        super().__init__(model, feature_dim=feature_dim, embed_dim=embed_dim, frozen=frozen)
        if projection == "identity":
            with torch.no_grad():
                self.projection.weight.copy_(torch.eye(embed_dim))
            self.projection.weight.requires_grad_(False)
        self.projection_kind = projection


class PooledImageTower(_PooledTower):
    """Images → a transformers vision model's ``pooler_output`` → projection → ``(B, embed_dim)``.

    Args:
        config: a `transformer_config` dict of a vision model with a pooled output
            (``clip_vision_model``, ``siglip_vision_model``).
        embed_dim: shared embedding size.
        projection: "linear" (learned, CLIP's) or "identity" (fixed, SigLIP's: none).
        frozen: lock the backbone.

    Example:
        >>> import torch
        >>> cfg = {"model_type": "clip_vision_model", "image_size": 32, "patch_size": 8,
        ...        "hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2,
        ...        "intermediate_size": 64}
        >>> PooledImageTower(cfg, embed_dim=16)(torch.randn(2, 3, 32, 32)).shape
        torch.Size([2, 16])
    """

    def __init__(
        self,
        config: dict[str, Any],
        *,
        embed_dim: int,
        projection: str = "linear",
        frozen: bool = False,
    ) -> None:
        super().__init__(config, embed_dim=embed_dim, projection=projection, frozen=frozen)

    def features(self, images: torch.Tensor) -> torch.Tensor:
        return self.backbone(pixel_values=images).pooler_output


class PooledTextTower(_PooledTower):
    """``{"input_ids", "attention_mask"}`` → a transformers text model's ``pooler_output`` →
    projection → ``(B, embed_dim)``.

    Args:
        config: a `transformer_config` dict (``clip_text_model``, ``siglip_text_model``).
        embed_dim: shared embedding size.
        projection: "linear" (learned, CLIP's) or "identity" (fixed, SigLIP's: none).
        frozen: lock the backbone.
        pad_to: pad every caption to this many tokens with ``pad_token_id`` first (SigLIP pools
            the last position and was trained on captions padded to 64): a batch padded to
            its longest caption then embeds exactly as one padded to the full length.
        pad_token_id: the token ``pad_to`` pads with.
        attention_mask: pass the attention mask to the model (CLIP); SigLIP was trained
            attending to its padding, so its tower leaves the mask out.

    Example:
        >>> import torch
        >>> cfg = {"model_type": "siglip_text_model", "vocab_size": 50, "hidden_size": 16,
        ...        "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 32,
        ...        "max_position_embeddings": 12}
        >>> tower = PooledTextTower(cfg, embed_dim=16, projection="identity", pad_to=12,
        ...                         pad_token_id=1, attention_mask=False)
        >>> ids = torch.tensor([[5, 6, 2], [7, 2, 1]])
        >>> full = torch.cat([ids, torch.ones(2, 9, dtype=torch.long)], dim=1)
        >>> torch.allclose(tower({"input_ids": ids}), tower({"input_ids": full}))
        True
    """

    def __init__(
        self,
        config: dict[str, Any],
        *,
        embed_dim: int,
        projection: str = "linear",
        frozen: bool = False,
        pad_to: int | None = None,
        pad_token_id: int = 0,
        attention_mask: bool = True,
    ) -> None:
        super().__init__(config, embed_dim=embed_dim, projection=projection, frozen=frozen)
        self.pad_to, self.pad_token_id, self.use_mask = pad_to, pad_token_id, attention_mask

    def features(self, tokens: Mapping[str, torch.Tensor]) -> torch.Tensor:
        if not isinstance(tokens, Mapping) or "input_ids" not in tokens:
            raise TypeError(
                "a text tower takes tokenized text: a mapping with 'input_ids' and "
                f"'attention_mask', got {type(tokens).__name__}"
            )
        ids, mask = tokens["input_ids"], tokens.get("attention_mask")
        if self.pad_to is not None and ids.shape[1] < self.pad_to:
            extra = self.pad_to - ids.shape[1]
            ids = torch.nn.functional.pad(ids, (0, extra), value=self.pad_token_id)
            if mask is not None:
                mask = torch.nn.functional.pad(mask, (0, extra), value=0)
        inputs = {"input_ids": ids}
        if self.use_mask and mask is not None:
            inputs["attention_mask"] = mask
        return self.backbone(**inputs).pooler_output
