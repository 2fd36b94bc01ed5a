"""transformers base models as tower backbones: built from a config dict or loaded pretrained.

Nothing here runs code that transformers does not ship: configs and weights are read with
``trust_remote_code=False``, ``auto_map`` entries (a repository's own classes) are dropped, and an
attention implementation other than PyTorch's own (``eager``, ``sdpa``) is refused, since any other
may make transformers download and run a Hub kernel.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

#: Attention implementations built into PyTorch; others (flash_attention_*, Hub kernels such as
#: ``kernels-community/...``) may make transformers fetch and run code.
BUILTIN_ATTENTION = ("eager", "sdpa")
_ATTENTION_KEYS = ("attn_implementation", "_attn_implementation", "_attn_implementation_internal")
# Never stored in a saved config: they name where a config came from, not what the model is.
_VOLATILE_KEYS = ("_name_or_path", "transformers_version", "auto_map")


def transformer_config(config: Any) -> dict[str, Any]:
    """A transformers config as a JSON-able dict, from a dict (needs ``model_type``), a
    transformers config object, or a local folder / Hub id (read with ``trust_remote_code=False``).

    Example:
        >>> transformer_config({"model_type": "bert", "hidden_size": 32})["hidden_size"]
        32
    """
    from transformers import AutoConfig, PreTrainedConfig

    if isinstance(config, dict):
        if "model_type" not in config:
            raise ValueError(
                "a transformers config dict needs a 'model_type' (e.g. 'bert', 'vit'), got keys "
                f"{sorted(config)}"
            )
        params = code_free_params(config)
        cfg = AutoConfig.for_model(config["model_type"], **params)
    elif isinstance(config, PreTrainedConfig):
        cfg = config
    else:
        cfg = AutoConfig.from_pretrained(str(config), trust_remote_code=False)
    out = cfg.to_dict()
    for volatile in _VOLATILE_KEYS:
        out.pop(volatile, None)
    return out


def code_free_params(config: dict[str, Any], where: str = "the tower config") -> dict[str, Any]:
    """``config`` without ``model_type`` and ``auto_map`` (nested configs too); raises
    `ValueError` for an attention implementation that is not PyTorch's own.

    Example:
        >>> code_free_params({"model_type": "bert", "hidden_size": 8, "auto_map": {"a": "m"}})
        {'hidden_size': 8}
        >>> code_free_params({"model_type": "bert", "attn_implementation": "kernels-community/x"})
        Traceback (most recent call last):
        ...
        ValueError: the tower config's attn_implementation 'kernels-community/x' is not ...
    """
    params = {}
    for key, value in config.items():
        if key in ("model_type", "auto_map"):
            continue
        if key in _ATTENTION_KEYS and value is not None:
            chosen = value.values() if isinstance(value, dict) else [value]
            if any(v is not None and v not in BUILTIN_ATTENTION for v in chosen):
                raise ValueError(
                    f"{where}'s {key} {value!r} is not one of PyTorch's own "
                    f"{BUILTIN_ATTENTION}: others may make transformers download and run a Hub "
                    "kernel, and loading a model never runs code"
                )
        if isinstance(value, dict) and "model_type" in value:  # a nested config (text_config)
            value = {"model_type": value["model_type"], **code_free_params(value, where)}
        params[key] = value
    return params


def build_transformer(config: dict[str, Any], pretrained: str | Path | None = None):
    """A transformers base model (no task head, no pooler) from a config dict or pretrained folder.

    With ``pretrained`` the weights are loaded from that folder or Hub id (safetensors only; the
    config must match); otherwise the model is randomly initialised from ``config``. No code
    outside transformers runs either way (``trust_remote_code=False``).
    """
    from transformers import AutoConfig, AutoModel

    if pretrained is not None:
        model = AutoModel.from_pretrained(
            str(pretrained), trust_remote_code=False, use_safetensors=True
        )
    else:
        if "model_type" not in config:
            raise ValueError(
                f"a transformers config needs a 'model_type', got keys {sorted(config)}"
            )
        cfg = AutoConfig.for_model(config["model_type"], **code_free_params(config))
        model = AutoModel.from_config(cfg, trust_remote_code=False)
    # the pooler (BERT's tanh head, ViT's) is unused: drop it so no parameter goes without
    # gradient (DDP would complain) and checkpoints stay small
    if getattr(model, "pooler", None) is not None:
        model.pooler = None
    return model
