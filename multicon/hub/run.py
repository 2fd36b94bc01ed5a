"""A run's output folder as a Hub-ready repository: `save_run`, and the recipe flags `HubArgs`."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from huggingface_hub import ModelHubMixin

from multicon import dist
from multicon.hub.card import write_model_card
from multicon.hub.push import check_repo_id, maybe_push, resolve_token


def save_run(folder: str | Path, model: ModelHubMixin, *, model_name: str, **card: Any) -> Path:
    """Write the model's weights, config (and extra files) and a fresh model card into ``folder``.

    ``card`` takes the keyword arguments of `build_model_card` (``method_tags``, ``datasets``,
    ``metrics``, ``hyperparameters``, ``usage``, ``repo_id``, ``license`` ...). Under several
    processes only rank 0 writes.

    Example:
        >>> import tempfile, torch
        >>> from multicon.hub import HubModel
        >>> class Tiny(HubModel):
        ...     def __init__(self, dim: int = 3):
        ...         super().__init__()
        ...         self.linear = torch.nn.Linear(dim, dim)
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     folder = save_run(tmp, Tiny(), model_name="tiny",
        ...                       datasets=["cifar10"], metrics={"knn_top1": 0.4})
        ...     sorted(p.name for p in folder.iterdir())
        ['README.md', 'config.json', 'model.safetensors']
    """
    if not isinstance(model, ModelHubMixin):
        raise TypeError(
            f"{type(model).__name__} cannot be saved as a run: subclass multicon.hub.HubModel"
        )
    folder = Path(folder)
    if dist.rank() == 0:
        model.save_pretrained(folder)
        write_model_card(folder, model_name=model_name, model_class=type(model), **card)
    return folder


@dataclass
class HubArgs:
    """Recipe flags for sharing the trained model; parse them with `HfArgumentParser`.

    The repo id and the token are checked when the flags are parsed, so a run that could not
    be uploaded fails before training rather than after.

    Example:
        >>> HubArgs().push("runs/x") is None  # no --push_to_hub: nothing to do
        True
    """

    push_to_hub: str = field(
        default="",
        metadata={
            "help": "Upload the model folder to this Hub repo (namespace/name) after training; "
            "the token comes from HF_TOKEN or `hf auth login`."
        },
    )
    hub_private: bool = field(default=False, metadata={"help": "Create the Hub repo private."})

    def __post_init__(self) -> None:
        if self.push_to_hub:
            check_repo_id(self.push_to_hub)
            resolve_token(None)

    def push(self, folder: str | Path) -> str | None:
        """Upload ``folder`` when ``--push_to_hub`` was given; the commit URL (else ``None``)."""
        return maybe_push(folder, self.push_to_hub, private=self.hub_private or None)

    def push_outcome(self, folder: str | Path) -> dict[str, str] | None:
        """`push`, for the end of a recipe: a failed upload neither loses the trained model
        nor stops the summary from being written. Returns ``None`` without ``--push_to_hub``,
        ``{"repo_id", "commit"}`` after an upload, and ``{"repo_id", "error"}`` after a failure,
        which is also printed as one line on stderr (the folder stays, to push again with
        ``tools/push_to_hub.py``).

        Example:
            >>> HubArgs().push_outcome("runs/x") is None
            True
        """
        if not self.push_to_hub:
            return None
        outcome = {"repo_id": self.push_to_hub}
        try:
            commit = self.push(folder)
        except Exception as error:  # noqa: BLE001 (any failure: the run's results come first)
            message = " ".join(f"{type(error).__name__}: {error}".split())
            print(
                f"push_to_hub: upload of {folder} to {self.push_to_hub} failed: {message} "
                "(the model is kept there; push it again with tools/push_to_hub.py)",
                file=sys.stderr,
            )
            return {**outcome, "error": message}
        return {**outcome, "commit": commit} if commit else None
