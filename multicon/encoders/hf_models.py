"""transformers base models as tower backbones: built from a config dict or loaded pretrained."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def transformer_config(config: dict[str, Any] | str | Path) -> dict[str, Any]:
    """A transformers config as a JSON-able dict, from a dict (needs ``model_type``) or a folder/id.

    Example:
        >>> transformer_config({"model_type": "bert", "hidden_size": 32})["hidden_size"]
        32
    """
    from transformers import AutoConfig

    if isinstance(config, dict):
        if "model_type" not in config:
            raise ValueError(
                "a transformers config dict needs a 'model_type' (e.g. 'bert', 'vit'), got keys "
                f"{sorted(config)}"
            )
        params = {k: v for k, v in config.items() if k != "model_type"}
        cfg = AutoConfig.for_model(config["model_type"], **params)
    else:
        cfg = AutoConfig.from_pretrained(str(config))
    out = cfg.to_dict()
    for volatile in ("_name_or_path", "transformers_version"):
        out.pop(volatile, None)
    return out


def build_transformer(config: dict[str, Any], pretrained: str | Path | None = None):
    """A transformers base model (no task head, no pooler) from a config dict or pretrained folder.

    With ``pretrained`` the weights are loaded from that folder or Hub id (the config must match);
    otherwise the model is randomly initialised from ``config``.
    """
    from transformers import AutoConfig, AutoModel

    if pretrained is not None:
        model = AutoModel.from_pretrained(str(pretrained))
    else:
        params = {k: v for k, v in config.items() if k != "model_type"}
        model = AutoModel.from_config(AutoConfig.for_model(config["model_type"], **params))
    # the pooler (BERT's tanh head, ViT's) is unused: drop it so no parameter goes without
    # gradient (DDP would complain) and checkpoints stay small
    if getattr(model, "pooler", None) is not None:
        model.pooler = None
    return model
