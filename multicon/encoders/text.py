"""Text towers: tokenized captions → a transformers encoder → pooled → projected."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from multicon.encoders.hf_models import build_transformer
from multicon.encoders.tower import Tower


class TextTower(Tower):
    """``{"input_ids", "attention_mask"}`` → transformers encoder → pooled → ``(B, embed_dim)``.

    Args:
        config: a `transformer_config` dict (e.g. a tiny ``BertConfig``, or the config of a local
            pretrained model such as all-MiniLM-L6-v2).
        embed_dim: shared embedding size.
        pooling: "mean" (over non-padding tokens, as sentence-transformers pool) or "cls".
        frozen: lock the transformer (locked-text tuning).
        pretrained: a local folder or Hub id to load weights from (safetensors only, no
            remote code; a `DualEncoder` saves the backbone's config and weights, not this path).

    Example:
        >>> import torch
        >>> cfg = {"model_type": "bert", "vocab_size": 100, "hidden_size": 32,
        ...        "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 64}
        >>> tower = TextTower(cfg, embed_dim=16)
        >>> ids = torch.randint(0, 100, (3, 7))
        >>> tower({"input_ids": ids, "attention_mask": torch.ones_like(ids)}).shape
        torch.Size([3, 16])
    """

    def __init__(
        self,
        config: dict[str, Any],
        *,
        embed_dim: int,
        pooling: str = "mean",
        frozen: bool = False,
        pretrained: str | Path | None = None,
    ) -> None:
        if pooling not in ("cls", "mean"):
            raise ValueError(f"text pooling must be 'cls' or 'mean', got {pooling!r}")
        model = build_transformer(config, pretrained)
        super().__init__(
            model, feature_dim=model.config.hidden_size, embed_dim=embed_dim, frozen=frozen
        )
        self.pooling = pooling

    def features(self, tokens: Mapping[str, torch.Tensor]) -> torch.Tensor:
        if not isinstance(tokens, Mapping) or "input_ids" not in tokens:
            raise TypeError(
                "a text tower takes tokenized text: a mapping with 'input_ids' and "
                f"'attention_mask', got {type(tokens).__name__}"
            )
        mask = tokens.get("attention_mask")
        if mask is None:
            mask = torch.ones_like(tokens["input_ids"])
        hidden = self.backbone(input_ids=tokens["input_ids"], attention_mask=mask).last_hidden_state
        if self.pooling == "cls":
            return hidden[:, 0]
        weights = mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * weights).sum(1) / weights.sum(1).clamp(min=1.0)
