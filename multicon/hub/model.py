"""`HubModel`: the base class of every multicon model a user keeps.

A subclass is an ``nn.Module`` whose ``__init__`` takes JSON-serialisable arguments.
`save_pretrained` writes ``model.safetensors`` (weights and persistent buffers) and
``config.json`` (the ``__init__`` arguments); `from_pretrained` rebuilds the module from
``config.json`` and loads the weights strictly. Only safetensors are read: nothing is unpickled.
A Hub download fetches only safetensors, JSON and tokenizer files (`DOWNLOAD_ONLY`): never code,
pickles or training state (`NEVER_DOWNLOAD`).

Extra files (a vocabulary, a tokenizer) are written by overriding `_save_pretrained` (call
``super()`` first) and read back by overriding `_from_folder`, which receives the local folder
(a saved directory, or the downloaded snapshot of a Hub repository)::

    class Word2Vec(HubModel, tags=["word2vec"]):
        def _save_pretrained(self, save_directory: Path) -> None:
            super()._save_pretrained(save_directory)
            (save_directory / "vocab.txt").write_text("\\n".join(self.words) + "\\n")

        @classmethod
        def _from_folder(cls, folder: Path, **config) -> "Word2Vec":
            model = cls(**config)
            model.words = (folder / "vocab.txt").read_text().splitlines()
            return model

An ``__init__`` argument that is not JSON (a vocabulary object) makes `save_pretrained` raise,
unless the class lists it in ``file_args``, writes it in `_save_pretrained` and passes it back
to ``cls(...)`` in `_from_folder`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, ClassVar, Self

from huggingface_hub import ModelCard, PyTorchModelHubMixin, snapshot_download
from safetensors.torch import load_model, save_model
from torch import nn

from multicon.hub.card import build_model_card, usage_snippet
from multicon.hub.push import check_repo_id, redact_token, resolve_token

WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"
# What a Hub download fetches: weights as safetensors, JSON configs, and tokenizer and vocabulary
# files (vocab.txt, merges.txt, sentencepiece's tokenizer.model) ...
DOWNLOAD_ONLY = ["*.safetensors", "*.json", "*.txt", "*.model"]
# ... and never, even where a name matches the above: code, pickles and training state.
NEVER_DOWNLOAD = ["*.py", "*.pyc", "*.so", "*.bin", "*.pt", "*.pth", "*.pkl", "*.pickle", "*.ckpt"]
NEVER_DOWNLOAD += ["checkpoint*/**", "checkpoints/**"]


class HubModel(
    nn.Module,
    PyTorchModelHubMixin,
    library_name="multicon",
    license="apache-2.0",
    tags=["contrastive-learning"],
):
    """An ``nn.Module`` that saves to, loads from and pushes to the Hugging Face Hub.

    Subclass it like `nn.Module`; Hub metadata goes in the class statement
    (``class ResNetEncoder(HubModel, tags=["image"], pipeline_tag="image-feature-extraction")``).
    Set `example_input` (Python source for one input batch) so the generated model card shows a
    usage snippet that embeds it, or override `usage_example`.

    Example:
        >>> import tempfile, torch
        >>> class Projector(HubModel):
        ...     example_input = "torch.randn(2, 4)"
        ...     def __init__(self, dim: int = 4, out: int = 2):
        ...         super().__init__()
        ...         self.linear = torch.nn.Linear(dim, out)
        ...     def forward(self, x):
        ...         return self.linear(x)
        >>> model = Projector(dim=4, out=3)
        >>> with tempfile.TemporaryDirectory() as folder:
        ...     model.save_pretrained(folder)
        ...     loaded = Projector.from_pretrained(folder)
        >>> x = torch.randn(5, 4)
        >>> torch.equal(model(x), loaded(x)), loaded.linear.out_features
        (True, 3)
    """

    example_input: ClassVar[str | None] = None
    # __init__ arguments that are not JSON but that the subclass writes to files of its own in
    # `_save_pretrained` and passes back in `_from_folder` (e.g. ``("vocab",)``).
    file_args: ClassVar[tuple[str, ...]] = ()

    def __new__(cls, *args: Any, **kwargs: Any) -> Self:
        instance = super().__new__(cls, *args, **kwargs)  # the mixin records the JSON arguments
        names = list(cls._hub_mixin_init_parameters)[1:]
        passed = {**dict(zip(names, args, strict=False)), **kwargs}
        unsaved = [
            name
            for name, value in passed.items()
            if name not in cls.file_args and not cls._is_jsonable(value)
        ]
        object.__setattr__(instance, "_hub_unsaved_args", unsaved)
        if isinstance(instance._hub_mixin_config, dict):  # file_args never go to config.json
            for name in cls.file_args:
                instance._hub_mixin_config.pop(name, None)
        return instance

    # -- saving -----------------------------------------------------------------------------
    def _save_pretrained(self, save_directory: Path) -> None:
        if self._hub_unsaved_args:
            raise TypeError(
                f"{type(self).__name__} was built with __init__ arguments "
                f"{', '.join(self._hub_unsaved_args)} that are not JSON-serialisable, so "
                "config.json could not rebuild it: pass numbers, strings, lists, dicts or "
                "dataclasses, or save those arguments as files and name them in file_args"
            )
        # safetensors' save_model de-duplicates tied tensors; load_model re-ties them.
        save_model(self, str(Path(save_directory) / WEIGHTS_NAME), metadata={"format": "pt"})

    def generate_model_card(self, *args, **kwargs) -> ModelCard:
        """The card `save_pretrained` / `push_to_hub` write; ``model_card_kwargs`` land here.

        Accepts the keyword arguments of `build_model_card` (``metrics``, ``datasets``,
        ``hyperparameters``, ``method_tags``, ``repo_id`` ...).
        """
        kwargs.setdefault("model_name", type(self).__name__)
        return build_model_card(model_class=type(self), **kwargs)

    @classmethod
    def usage_example(cls, repo_id: str) -> str:
        """Python source that loads this model from ``repo_id`` and embeds `example_input`."""
        return usage_snippet(cls, repo_id, cls.example_input)

    # -- loading ----------------------------------------------------------------------------
    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | Path, **kwargs) -> Self:
        """Rebuild a saved model from a local folder or a Hub repository id.

        Keyword arguments are those of `PyTorchModelHubMixin.from_pretrained` (``revision``,
        ``token``, ``cache_dir``, ``local_files_only``, ``map_location``, ``strict``) plus
        ``__init__`` arguments that override the saved config. Raises `FileNotFoundError` when
        the folder lacks its files and `ValueError` for a name that is neither a folder nor a
        valid repository id.
        """
        source = str(pretrained_model_name_or_path)
        if os.path.isdir(source):
            missing = [
                n for n in (CONFIG_NAME, WEIGHTS_NAME) if not os.path.isfile(Path(source, n))
            ]
            if missing:
                raise FileNotFoundError(
                    f"{source} is not a saved {cls.__name__}: it has no {', '.join(missing)} "
                    "(write one with save_pretrained or multicon.hub.save_run)"
                )
        elif os.path.exists(source):
            raise ValueError(
                f"from_pretrained expects a folder or a Hub repo id, got file {source}"
            )
        else:
            check_repo_id(source, or_folder=True)
        return super().from_pretrained(source, **kwargs)

    @classmethod
    def _from_pretrained(
        cls,
        *,
        model_id: str,
        revision: str | None,
        cache_dir: str | Path | None,
        force_download: bool,
        local_files_only: bool,
        token: str | bool | None,
        map_location: str = "cpu",
        strict: bool = True,
        **model_kwargs: Any,
    ) -> Self:
        if os.path.isdir(model_id):
            folder = Path(model_id)
        else:
            folder = Path(
                snapshot_download(
                    repo_id=model_id,
                    revision=revision,
                    cache_dir=cache_dir,
                    force_download=force_download,
                    local_files_only=local_files_only,
                    token=token,
                    allow_patterns=DOWNLOAD_ONLY,
                    ignore_patterns=NEVER_DOWNLOAD,
                )
            )
        model = cls._from_folder(folder, **model_kwargs)
        weights = folder / WEIGHTS_NAME
        try:
            load_model(model, str(weights), strict=strict, device=map_location)
        except RuntimeError as error:
            raise ValueError(f"{weights} does not fit {cls.__name__}: {error}") from error
        model.eval()
        return model

    @classmethod
    def _from_folder(cls, folder: Path, **config: Any) -> Self:
        """Build the (not yet loaded) model from ``config``; override to read extra files."""
        return cls(**config)

    # -- pushing ----------------------------------------------------------------------------
    def push_to_hub(self, repo_id: str, *, token: str | None = None, **kwargs: Any) -> str:
        """Save to a temporary folder and upload it as one commit; returns the commit URL.

        Keyword arguments are those of `PyTorchModelHubMixin.push_to_hub` (``private``,
        ``commit_message``, ``branch``, ``create_pr``, ``model_card_kwargs`` ...). The repo id
        and the token are checked before any request; the token never appears in errors.
        """
        check_repo_id(repo_id)
        token = resolve_token(token)
        card_kwargs = dict(kwargs.pop("model_card_kwargs", None) or {})
        card_kwargs.setdefault("repo_id", repo_id)
        with redact_token(token):
            return super().push_to_hub(
                repo_id, token=token, model_card_kwargs=card_kwargs, **kwargs
            )
