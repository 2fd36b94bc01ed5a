"""A transformers ``CLIPModel`` or ``SiglipModel`` folder as a multicon `DualEncoder`, and back.

`load_pretrained` reads a folder saved by ``CLIPModel.save_pretrained`` /
``SiglipModel.save_pretrained`` (``hf download openai/clip-vit-base-patch32 --local-dir
clip-b32``): both towers with their own pooling, CLIP's projections, the logit scale (CLIP's
InfoNCE temperature, SigLIP's ``t``) and SigLIP's bias, the tokenizer and the image processor's
size and mean/std. The result is an ordinary `DualEncoder`, so the whole engine trains it
(in-batch, queued or feature-queue negatives, InfoNCE or the sigmoid loss, frozen towers,
GradCache), it saves and loads with ``save_pretrained`` / ``DualEncoder.from_pretrained``, and
`export_transformers` writes it back in the format it came from.

Nothing here runs code from the folder: weights are read as safetensors, configs and tokenizers
with ``trust_remote_code=False``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from multicon.encoders.dual import DualEncoder
from multicon.encoders.hf_models import transformer_config
from multicon.encoders.tokenization import load_tokenizer

logger = logging.getLogger(__name__)

#: model_type → (transformers class, the loss the model was trained with)
FAMILIES = {"clip": ("CLIPModel", "infonce"), "siglip": ("SiglipModel", "siglip")}
# each family's image processor statistics, used when the folder has no preprocessor_config.json
_DEFAULT_STATS = {
    "clip": ((0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)),
    "siglip": ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
}
# how each family's processor resizes, when the folder has no preprocessor_config.json
_DEFAULT_RESIZE = {"clip": "shortest_edge", "siglip": "square"}
_PIL_RESAMPLE = {2: "bilinear", 3: "bicubic"}  # PIL's resampling codes, as processors save them
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json")
_TOWERS = ("clip_vision_model", "clip_text_model", "siglip_vision_model", "siglip_text_model")


def pretrained_family(folder: str | Path) -> str:
    """``"clip"`` or ``"siglip"``: the kind of image–text model saved in ``folder``.

    Raises `FileNotFoundError` for a missing folder or config.json, and `ValueError` naming the
    folder and what it holds for any other model (a BERT, a vision tower alone, ...).

    Example:
        >>> import json, tempfile
        >>> with tempfile.TemporaryDirectory() as d:
        ...     _ = (Path(d) / "config.json").write_text(json.dumps({"model_type": "siglip"}))
        ...     pretrained_family(d)
        'siglip'
    """
    path = Path(folder)
    if not path.is_dir():
        raise FileNotFoundError(
            f"--pretrained {path}: no such folder (save a CLIPModel or SiglipModel there, e.g. "
            "`hf download openai/clip-vit-base-patch32 --local-dir clip-b32`)"
        )
    config = path / "config.json"
    if not config.is_file():
        raise FileNotFoundError(
            f"--pretrained {path} has no config.json: it must be a folder written by "
            "CLIPModel.save_pretrained or SiglipModel.save_pretrained"
        )
    try:
        saved = json.loads(config.read_text(encoding="utf-8"))
    except ValueError as err:
        raise ValueError(f"{config} is not valid JSON: {err}") from None
    model_type = saved.get("model_type") if isinstance(saved, dict) else None
    if model_type in FAMILIES:
        return model_type
    found = f"model_type {model_type!r}"
    if isinstance(saved, dict) and saved.get("architectures"):
        found += f" ({', '.join(map(str, saved['architectures']))})"
    hint = ""
    if model_type in _TOWERS:
        hint = (
            ": one tower alone; --pretrained needs the whole image-text model (both towers, "
            "their projections and the logit scale)"
        )
    raise ValueError(
        f"--pretrained {path} holds a {found}, not a CLIPModel or SiglipModel (model_type "
        f"'clip' or 'siglip'){hint}"
    )


def pretrained_loss(folder: str | Path) -> str:
    """The loss the model in ``folder`` was trained with: ``"infonce"`` (CLIP) or ``"siglip"``.

    Example:
        >>> import json, tempfile
        >>> with tempfile.TemporaryDirectory() as d:
        ...     _ = (Path(d) / "config.json").write_text(json.dumps({"model_type": "clip"}))
        ...     pretrained_loss(d)
        'infonce'
    """
    return FAMILIES[pretrained_family(folder)][1]


def load_pretrained(
    folder: str | Path,
    *,
    max_length: int | None = None,
    freeze_image: bool = False,
    freeze_text: bool = False,
    learn_temperature: bool = True,
) -> DualEncoder:
    """The `DualEncoder` of the ``CLIPModel`` or ``SiglipModel`` saved in ``folder``, with its
    tokenizer; its embeddings and logits are the transformers model's.

    Args:
        folder: a local folder with config.json, model.safetensors, the tokenizer files and
            (optionally) preprocessor_config.json.
        max_length: caption tokens kept (default and maximum: the text model's positions).
        freeze_image, freeze_text: lock that tower's backbone (its CLIP projection still trains).
        learn_temperature: learn the logit scale (and SigLIP's bias) while fine-tuning.
    """
    family = pretrained_family(folder)
    if not any((Path(folder) / name).is_file() for name in _TOKENIZER_FILES):
        raise FileNotFoundError(
            f"--pretrained {folder} has no tokenizer ({' or '.join(_TOKENIZER_FILES)}): save the "
            "model's tokenizer beside it (`hf download` fetches it with the weights)"
        )
    hf = _hf_class(family).from_pretrained(
        str(folder), trust_remote_code=False, use_safetensors=True
    )
    text_config, vision_config = hf.config.text_config, hf.config.vision_config
    positions = text_config.max_position_embeddings
    if max_length is None:
        max_length = positions
    if max_length > positions:
        raise ValueError(
            f"--max_length {max_length} is more than the {positions} positions of the text "
            f"model in {folder}"
        )
    tokenizer = load_tokenizer(folder, max_length=max_length)
    text = {"kind": "pooled", "config": transformer_config(text_config)}
    image = {"kind": "pooled", "config": transformer_config(vision_config)}
    if family == "clip":
        embed_dim = hf.config.projection_dim
        text["projection"] = image["projection"] = "linear"
        bias = None
    else:  # SigLIP's pooled outputs share one space; its text model pools the last position
        embed_dim = vision_config.hidden_size
        text["projection"] = image["projection"] = "identity"
        text.update(pad_to=positions, pad_token_id=tokenizer.pad_token_id, attention_mask=False)
        bias = float(hf.logit_bias.detach())
    model = DualEncoder(
        image,
        text,
        embed_dim=embed_dim,
        image_size=vision_config.image_size,
        freeze_image=freeze_image,
        freeze_text=freeze_text,
        temperature=float(torch.exp(-hf.logit_scale.detach().float())),
        learn_temperature=learn_temperature,
        logit_bias=bias,
        **_image_processing(Path(folder), family, vision_config.image_size),
    )
    _copy(hf, model, to_hf=False)
    model.tokenizer = tokenizer
    return model


def export_transformers(model: DualEncoder, folder: str | Path) -> Path:
    """Write ``model`` (loaded by `load_pretrained`, fine-tuned or not) as the transformers model
    it came from: ``CLIPModel.from_pretrained(folder)`` (or ``SiglipModel``) then gives its
    embeddings and logits; the tokenizer and an image processor with its size and mean/std are
    written alongside. Returns ``folder``.

    A fine-tuned model exports as it is, with the logit scale (and SigLIP's bias) it learned;
    a CLIP fine-tuned with the sigmoid loss loses that loss's bias (``CLIPModel`` has none).
    """
    family = transformers_family(model)
    from transformers import CLIPConfig, SiglipConfig

    text_config = model.text.backbone.config.to_dict()
    vision_config = model.image.backbone.config.to_dict()
    if family == "clip":
        config = CLIPConfig(
            text_config=text_config, vision_config=vision_config, projection_dim=model.embed_dim
        )
    else:
        config = SiglipConfig(text_config=text_config, vision_config=vision_config)
    hf = _hf_class(family)(config)
    _copy(hf, model, to_hf=True)
    folder = Path(folder)
    hf.save_pretrained(str(folder))
    if model.tokenizer is not None:  # saved with its full length, as the original was
        kept = model.tokenizer.model_max_length
        model.tokenizer.model_max_length = config.text_config.max_position_embeddings
        try:
            model.tokenizer.save_pretrained(str(folder))
        finally:
            model.tokenizer.model_max_length = kept
    _image_processor(family, model).save_pretrained(str(folder))
    return folder


def transformers_family(model: DualEncoder) -> str:
    """``"clip"`` or ``"siglip"`` for a `DualEncoder` built by `load_pretrained`; `ValueError`
    for any other (its towers are not a CLIP's or a SigLIP's)."""
    config = getattr(model.image.backbone, "config", None)
    model_type = getattr(config, "model_type", None)
    for family in FAMILIES:
        if model_type == f"{family}_vision_model":
            text_type = getattr(getattr(model.text.backbone, "config", None), "model_type", None)
            if text_type == f"{family}_text_model":
                return family
    raise ValueError(
        f"this DualEncoder's towers ({type(model.image).__name__}, {type(model.text).__name__}) "
        "are not a CLIPModel's or a SiglipModel's: only a model loaded with --pretrained "
        "exports to transformers"
    )


def image_text_logits(model: DualEncoder, images, texts: Sequence[str] | dict) -> torch.Tensor:
    """``(n_images, n_texts)`` logits: the cosine times the logit scale (clamped at 100, as
    training clamps it), plus SigLIP's bias when the model holds one (the transformers model's
    ``logits_per_image``; ``sigmoid`` of SigLIP's is a match probability)."""
    scale = model.log_logit_scale.detach().float().exp().clamp(max=100.0)
    logits = model.encode_image(images) @ model.encode_text(texts).T * scale
    return logits if model.logit_bias is None else logits + model.logit_bias.detach()


def _hf_class(family: str):
    import transformers

    return getattr(transformers, FAMILIES[family][0])


def _copy(hf: nn.Module, model: DualEncoder, *, to_hf: bool) -> None:
    """Copy every weight between the transformers model and the dual encoder (strictly: a
    missing or extra key raises), one way or the other."""
    pairs = []
    for theirs, tower, inner in ((hf.vision_model, model.image, "vision_model"),
                                 (hf.text_model, model.text, "text_model")):  # fmt: skip
        # a whole tower model (SiglipModel's), or only its inner transformer (older CLIPModel's)
        same = isinstance(theirs, type(tower.backbone))
        pairs.append((theirs, tower.backbone if same else getattr(tower.backbone, inner)))
    if hasattr(hf, "visual_projection"):  # CLIP's projections (SigLIP's are the identity)
        pairs += [(hf.visual_projection, model.image.projection)]
        pairs += [(hf.text_projection, model.text.projection)]
    scalars = [(hf.logit_scale, model.log_logit_scale)]
    if hasattr(hf, "logit_bias") and model.logit_bias is not None:
        scalars.append((hf.logit_bias, model.logit_bias))
    with torch.no_grad():
        for theirs, ours in pairs:
            src, dst = (ours, theirs) if to_hf else (theirs, ours)
            dst.load_state_dict(src.state_dict())
        for theirs, ours in scalars:
            src, dst = (ours, theirs) if to_hf else (theirs, ours)
            dst.copy_(src.reshape(dst.shape))


def _image_processing(folder: Path, family: str, image_size: int) -> dict[str, Any]:
    """The image processor's mean, std, resize and interpolation as `DualEncoder` arguments, or
    the family's processor defaults when the folder has none."""
    (mean, std), resize = _DEFAULT_STATS[family], _DEFAULT_RESIZE[family]
    path = folder / "preprocessor_config.json"
    saved: dict[str, Any] = {}
    if path.is_file():
        saved = json.loads(path.read_text(encoding="utf-8"))
    else:
        logger.warning("%s has no preprocessor_config.json: using %s's processor", folder, family)
    resample = saved.get("resample", 3)
    if resample not in _PIL_RESAMPLE:
        raise ValueError(
            f"{path}: resample {resample!r} is not one multicon resizes with (2: bilinear, "
            "3: bicubic)"
        )
    size = saved.get("size") or {}
    if "shortest_edge" in size:
        resize = "shortest_edge"
    elif "height" in size:
        resize = "square"
    crop = (saved.get("crop_size") or {}).get("height", image_size)
    edge = size.get("shortest_edge", size.get("height", image_size))
    if edge != image_size or crop != image_size:
        logger.warning(
            "%s resizes to %s and crops %s; multicon brings images to the model's %d px directly "
            "(they are framed a little differently)",
            path,
            size,
            crop,
            image_size,
        )
    return {
        "image_mean": list(saved.get("image_mean", mean)),
        "image_std": list(saved.get("image_std", std)),
        "image_resize": resize,
        "image_interpolation": _PIL_RESAMPLE[resample],
    }


def _image_processor(family: str, model: DualEncoder):
    """The transformers image processor that prepares images as ``model.image_transform()``."""
    from transformers import CLIPImageProcessor, SiglipImageProcessor

    resample = {name: code for code, name in _PIL_RESAMPLE.items()}[model.image_interpolation]
    stats = {"image_mean": list(model.image_mean), "image_std": list(model.image_std)}
    size, square = model.image_size, {"height": model.image_size, "width": model.image_size}
    cls = CLIPImageProcessor if family == "clip" else SiglipImageProcessor
    if model.image_resize == "square":
        return cls(size=square, do_center_crop=False, resample=resample, **stats)
    return cls(
        size={"shortest_edge": size},
        crop_size=square,
        do_center_crop=True,
        resample=resample,
        **stats,
    )
