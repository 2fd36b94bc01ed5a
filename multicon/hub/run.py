"""`save_run`: a run's output folder as a Hub-ready repository, in one call."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from huggingface_hub import ModelHubMixin

from multicon.hub.card import write_model_card


def save_run(folder: str | Path, model: ModelHubMixin, *, model_name: str, **card: Any) -> Path:
    """Write the model's weights, config (and extra files) and a fresh model card into ``folder``.

    ``card`` takes the keyword arguments of `build_model_card` (``method_tags``, ``datasets``,
    ``metrics``, ``hyperparameters``, ``usage``, ``repo_id``, ``license`` ...).

    Example:
        >>> import tempfile, torch
        >>> from multicon.hub import HubModel
        >>> class Tiny(HubModel):
        ...     def __init__(self, dim: int = 3):
        ...         super().__init__()
        ...         self.linear = torch.nn.Linear(dim, dim)
        >>> folder = save_run(tempfile.mkdtemp(), Tiny(), model_name="tiny",
        ...                   datasets=["cifar10"], metrics={"knn_top1": 0.4})
        >>> sorted(p.name for p in folder.iterdir())
        ['README.md', 'config.json', 'model.safetensors']
    """
    if not isinstance(model, ModelHubMixin):
        raise TypeError(
            f"{type(model).__name__} cannot be saved as a run: subclass multicon.hub.HubModel"
        )
    folder = Path(folder)
    model.save_pretrained(folder)
    write_model_card(folder, model_name=model_name, model_class=type(model), **card)
    return folder
