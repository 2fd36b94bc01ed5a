"""Which multicon model a saved folder holds, read from its ``config.json`` before loading it."""

from __future__ import annotations

import importlib
import inspect
import json
from pathlib import Path

# kind -> (module, class): the models the recipes save
MODEL_CLASSES = {
    "images": ("multicon.encoders.vision", "ImageEncoder"),
    "digits": ("multicon.encoders.small_cnn", "SmallConvEncoder"),
    "captions": ("multicon.encoders.dual", "DualEncoder"),
    "words": ("multicon.text.word2vec", "Word2Vec"),
}


def model_class(kind: str) -> type:
    module, name = MODEL_CLASSES[kind]
    return getattr(importlib.import_module(module), name)


def _fits(cls: type, keys: set[str]) -> bool:
    """Whether ``config.json``'s keys are ``cls.__init__``'s JSON arguments, its required ones
    included."""
    params = list(inspect.signature(cls.__init__).parameters.values())[1:]
    names = {p.name for p in params} - set(cls.file_args)
    required = {p.name for p in params if p.default is p.empty} - set(cls.file_args)
    return keys <= names and required <= keys


def model_kind(folder: str | Path) -> str:
    """The kind (a key of `MODEL_CLASSES`) of the model saved in ``folder``; `FileNotFoundError`
    or `ValueError` naming the folder when it is not a multicon model.

    Example:
        >>> import tempfile
        >>> from multicon.encoders.small_cnn import SmallConvEncoder
        >>> with tempfile.TemporaryDirectory() as folder:
        ...     SmallConvEncoder(in_channels=1, width=4, proj_dim=4).save_pretrained(folder)
        ...     model_kind(folder)
        'digits'
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"no model folder {folder}")
    config = folder / "config.json"
    if not config.is_file() or not (folder / "model.safetensors").is_file():
        raise ValueError(
            f"{folder} is not a multicon model folder: it needs config.json and "
            "model.safetensors (a recipe saves them in OUTPUT_DIR/model)"
        )
    try:
        keys = json.loads(config.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"{config} is not valid JSON: {error}") from None
    if isinstance(keys, dict):
        for kind in MODEL_CLASSES:
            if _fits(model_class(kind), set(keys)):
                return kind
    names = ", ".join(name for _, name in MODEL_CLASSES.values())
    raise ValueError(f"{folder} is not a multicon model: its config.json fits none of {names}")


def require_kind(folder: str | Path, kind: str, command: str) -> None:
    """Raise `ValueError` unless ``folder`` holds a model of ``kind``, naming the command for the
    kind it does hold."""
    found = model_kind(folder)
    if found != kind:
        wanted, held = MODEL_CLASSES[kind][1], MODEL_CLASSES[found][1]
        hint = f"; use `multicon eval {found}`" if found != "digits" else ""
        raise ValueError(f"{folder} holds a {held} model: `{command}` needs {wanted}{hint}")


def require_multicon_card(folder: str | Path) -> None:
    """Raise `ValueError` unless ``folder/README.md`` is a model card that multicon wrote (its
    metadata says ``library_name: multicon``): any `HubModel`'s folder, a user's own class too.
    A folder with no README.md passes: `multicon.hub.push_folder` names the missing files."""
    card = Path(folder) / "README.md"
    if not card.is_file():
        return
    import yaml

    text = card.read_text(encoding="utf-8", errors="replace")
    meta = None
    if text.startswith("---"):
        head = text[3:].split("\n---", 1)[0]
        try:
            meta = yaml.safe_load(head)
        except yaml.YAMLError:
            meta = None
    if not isinstance(meta, dict) or meta.get("library_name") != "multicon":
        raise ValueError(
            f"{folder} is not a multicon model: its README.md does not say library_name: "
            "multicon (multicon.hub.save_run and save_pretrained write that card)"
        )
