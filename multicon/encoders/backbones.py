"""Image backbones by name: torchvision classifiers, transformers vision models, timm models.

A backbone is named by one string, ``FAMILY:NAME``:

* ``torchvision:convnext_tiny`` (or a bare ``resnet18``): any model of
  ``torchvision.models.list_models(module=torchvision.models)``, its classifier layer replaced
  by ``Identity``; the feature size is that layer's input size, read from the model.
* ``hf:PATH``: a transformers vision model built by ``AutoModel`` from a local folder
  (``config.json``, with its ``model.safetensors`` weights when there) or a config ``.json``
  file. An image–text folder (CLIP, SigLIP) gives its vision tower. Pooled as the family's model
  card does: the model's own ``pooler_output`` where it gives one (ViT's pooler, CLIP's
  post-LayerNorm CLS token, DINOv2's CLS token, SigLIP's attention-pooling head), else the mean
  of ``last_hidden_state``.
* ``timm:resnet18``: a timm model with ``num_classes=0`` (its pooled features), when timm is
  installed (``pip install timm``; never required otherwise).

Pretrained weights bring their own input statistics (`Backbone.stats`), which
`multicon.encoders.normalize` prefers over statistics of the data. What `build_backbone`
returns in ``saved`` rebuilds the same architecture offline, without weights or paths: models
save that in ``config.json`` and their weights in ``model.safetensors``.
"""

from __future__ import annotations

import difflib
import inspect
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

FAMILIES = ("torchvision", "hf", "timm")
#: classes of a torchvision classifier built without weights (the size of its head's output)
TORCHVISION_CLASSES = 1000
BACKBONE_HELP = (
    "Image backbone: torchvision:NAME (any torchvision classifier, e.g. convnext_tiny; a bare "
    "resnet18 works too), hf:PATH (a transformers vision model folder or config .json), or "
    "timm:NAME (needs pip install timm)."
)
WEIGHTS_HELP = (
    "Pretrained backbone weights: a torchvision weights name (DEFAULT, IMAGENET1K_V1; read "
    "from torch's cache or downloaded) or, for timm, 'pretrained'. hf: folders bring their own."
)


@dataclass
class Backbone:
    """A built backbone: ``module`` maps images ``(B, 3, H, W)`` to ``(B, feature_dim)``.

    ``stats``: the pretrained weights' input normalisation ``{"mean", "std", "source"}`` (None
    without weights). ``saved``: the arguments that rebuild this architecture without weights
    or paths (``arch``, ``weights`` "", ``hf_config``).
    """

    module: nn.Module
    feature_dim: int
    stats: dict[str, Any] | None = None
    saved: dict[str, Any] = field(default_factory=dict)


def parse_backbone(spec: str) -> tuple[str, str]:
    """``"FAMILY:NAME"`` → ``(family, name)``; a bare name is a torchvision model.

    Example:
        >>> parse_backbone("torchvision:convnext_tiny"), parse_backbone("resnet18")
        (('torchvision', 'convnext_tiny'), ('torchvision', 'resnet18'))
        >>> parse_backbone("hf:/models/dinov2")
        ('hf', '/models/dinov2')
    """
    family, sep, name = spec.partition(":")
    if not sep:
        return "torchvision", spec
    if family not in FAMILIES:
        raise ValueError(
            f"unknown backbone family {family!r} in {spec!r}: use one of "
            f"{', '.join(f + ':' for f in FAMILIES)}"
        )
    if not name:
        raise ValueError(f"backbone {spec!r} names no model after '{family}:'")
    return family, name


def backbone_label(spec: str, hf_config: dict[str, Any] | None = None) -> str:
    """A short name for model names and cards: ``convnext_tiny``, ``hf-dinov2``, ``timm-vit_s``.

    Example:
        >>> backbone_label("torchvision:resnet50"), backbone_label("hf", {"model_type": "vit"})
        ('resnet50', 'hf-vit')
    """
    if spec == "hf":
        return f"hf-{(hf_config or {}).get('model_type', 'model')}"
    family, name = parse_backbone(spec)
    if family == "torchvision":
        return name
    if family == "hf":
        try:
            return f"hf-{_hf_config_dict(name)[0].get('model_type', 'model')}"
        except (OSError, ValueError):
            return f"hf-{Path(name).stem}"
    return f"timm-{name.replace('/', '-')}"


def unknown_name(name: str, known: list[str], what: str) -> ValueError:
    """A ValueError for an unknown ``name`` that lists the closest of ``known``."""
    close = difflib.get_close_matches(name, known, n=5, cutoff=0.5)
    hint = f"; close matches: {', '.join(close)}" if close else ""
    return ValueError(f"unknown {what} {name!r}{hint} ({len(known)} known)")


def build_backbone(
    spec: str,
    *,
    weights: str = "",
    cifar_stem: bool | None = None,
    norm: str = "batch",
    hf_config: dict[str, Any] | None = None,
) -> Backbone:
    """The backbone ``spec`` names (see the module docstring), without its classifier.

    Args:
        spec: ``torchvision:NAME``, a bare torchvision name, ``hf:PATH``, ``timm:NAME``, or
            ``"hf"`` with ``hf_config`` (a saved transformers config dict).
        weights: pretrained weights (`WEIGHTS_HELP`); "" builds a random initialisation.
        cifar_stem: ResNets only (torchvision's or timm's ``conv1`` + ``maxpool`` stem): a 3×3
            stride-1 first conv and no max-pool, for 32 px images. ``None``: off.
        norm: ResNets only: "batch" or "group" (GroupNorm, 32 groups).

    Example:
        >>> net = build_backbone("torchvision:mobilenet_v3_small")
        >>> net.feature_dim, net.module(torch.randn(2, 3, 32, 32)).shape
        (1024, torch.Size([2, 1024]))
    """
    if spec == "hf":
        if hf_config is None:
            raise ValueError("backbone 'hf' needs its hf_config (a transformers config dict)")
        built = _hf_backbone(dict(hf_config), "the saved hf_config", None)
    else:
        family, name = parse_backbone(spec)
        if family != "torchvision" and norm != "batch":
            raise ValueError(f"--image_norm {norm} is for torchvision ResNets, not {spec!r}")
        if family == "torchvision":
            built = _torchvision_backbone(name, weights, norm)
        elif family == "timm":
            built = _timm_backbone(name, weights)
        elif weights:
            raise ValueError(
                f"--backbone_weights {weights!r}: an hf: backbone loads the weights in its own "
                "folder (config .json files start from a random initialisation)"
            )
        else:
            config, folder = _hf_config_dict(name)
            built = _hf_backbone(config, name, folder)
    if cifar_stem:
        cifar_stem_of(built.module, spec)
    built.saved["cifar_stem"] = bool(cifar_stem)
    return built


def pretrained_stats(spec: str, weights: str = "") -> dict[str, Any] | None:
    """The input normalisation of the pretrained weights ``spec``/``weights`` name, without
    building the model; None where there are none (random initialisation, no image processor).

    Example:
        >>> pretrained_stats("resnet18", "IMAGENET1K_V1")["mean"]
        [0.485, 0.456, 0.406]
        >>> pretrained_stats("resnet18") is None
        True
    """
    if spec == "hf":
        return None
    family, name = parse_backbone(spec)
    if family == "torchvision":
        return _torchvision_stats(name, _torchvision_weights(name, weights)) if weights else None
    if family == "timm":
        if not weights:
            return None
        return _timm_stats(name, _timm().create_model(name, pretrained=False).pretrained_cfg)
    path = Path(name)
    return _hf_stats(path) if path.is_dir() and _hf_weights(path) else None


# -- torchvision -----------------------------------------------------------------------------
def torchvision_names() -> list[str]:
    """Every torchvision classification model name."""
    import torchvision

    return torchvision.models.list_models(module=torchvision.models)


def _torchvision_weights(name: str, weights: str):
    import torchvision

    enum = torchvision.models.get_model_weights(name)
    try:
        return enum[weights]
    except KeyError:
        known = ["DEFAULT", *enum.__members__]
        raise unknown_name(weights, known, f"--backbone_weights of {name}") from None


def _torchvision_stats(name: str, w) -> dict[str, Any] | None:
    preset = w.transforms()
    if not hasattr(preset, "mean"):
        return None
    mean, std = [float(v) for v in preset.mean], [float(v) for v in preset.std]
    return {"mean": mean, "std": std, "source": f"torchvision {w}"}


def _torchvision_backbone(name: str, weights: str, norm: str) -> Backbone:
    import torchvision

    names = torchvision_names()
    if name not in names:
        raise unknown_name(name, names, "torchvision model")
    kwargs: dict[str, Any] = {}
    if norm == "group":
        kwargs["norm_layer"] = lambda channels: nn.GroupNorm(32, channels)
    elif norm != "batch":
        raise ValueError(f"unknown ResNet norm {norm!r}; choose one of ('batch', 'group')")
    w = _torchvision_weights(name, weights) if weights else None
    try:
        net = torchvision.models.get_model(name, weights=w, **kwargs)
    except TypeError as err:  # only ResNet-style builders take a norm_layer
        raise ValueError(f"--image_norm group is for torchvision ResNets, not {name}") from err
    _drop_auxiliary_heads(net)
    classes = len(w.meta["categories"]) if w is not None else TORCHVISION_CLASSES
    feature_dim = _remove_classifier(net, classes, name)
    stats = _torchvision_stats(name, w) if w is not None else None
    return Backbone(net, feature_dim, stats, {"arch": f"torchvision:{name}", "weights": ""})


def _drop_auxiliary_heads(net: nn.Module) -> None:
    """GoogLeNet and Inception v3 return auxiliary logits in training mode: drop those heads."""
    if getattr(net, "aux_logits", False):
        net.aux_logits = False
        for child, _ in list(net.named_children()):
            if "aux" in child.lower():
                setattr(net, child, None)


def has_resnet_stem(net: nn.Module) -> bool:
    """Whether ``net`` has a torchvision ResNet's stem (``conv1`` and ``maxpool``)."""
    return isinstance(getattr(net, "conv1", None), nn.Conv2d) and hasattr(net, "maxpool")


def cifar_stem_of(net: nn.Module, name: str) -> None:
    """Put SimCLR's CIFAR stem in a torchvision ResNet: a 3×3 stride-1 ``conv1``, no max-pool."""
    conv = getattr(net, "conv1", None)
    if not has_resnet_stem(net):
        raise ValueError(
            f"--cifar_stem replaces a ResNet's conv1 and max-pool; {name} has no such stem "
            "(give --cifar_stem false)"
        )
    net.conv1 = nn.Conv2d(3, conv.out_channels, kernel_size=3, stride=1, padding=1, bias=False)
    net.maxpool = nn.Identity()


def _remove_classifier(net: nn.Module, classes: int, name: str) -> int:
    """Replace the one layer that outputs ``classes`` scores by Identity; its input size."""
    heads = [
        (path, m)
        for path, m in net.named_modules()
        if (isinstance(m, nn.Linear) and m.out_features == classes)
        or (isinstance(m, nn.Conv2d) and m.out_channels == classes)
    ]
    if len(heads) != 1:
        found = [path for path, _ in heads]
        raise ValueError(
            f"torchvision {name}: expected one classifier layer with {classes} outputs, found "
            f"{found or 'none'}"
        )
    path, head = heads[0]
    net.set_submodule(path, nn.Identity())
    return head.in_features if isinstance(head, nn.Linear) else head.in_channels


# -- transformers ----------------------------------------------------------------------------
def _hf_config_dict(path: str) -> tuple[dict[str, Any], Path | None]:
    """(config dict, folder or None) of an ``hf:PATH`` backbone; local files only."""
    p = Path(path)
    if p.is_dir():
        file, folder = p / "config.json", p
    elif p.is_file():
        file, folder = p, None
    else:
        raise FileNotFoundError(
            f"hf backbone {path}: no such folder or config .json (hf: reads local files only; "
            "save a Hub model with save_pretrained first)"
        )
    if not file.is_file():
        raise FileNotFoundError(f"hf backbone {path}: the folder has no config.json")
    try:
        config = json.loads(file.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"hf backbone {file}: not a JSON config ({err})") from err
    if not isinstance(config, dict) or "model_type" not in config:
        raise ValueError(f"hf backbone {file}: a transformers config needs a 'model_type'")
    return config, folder


def _hf_weights(folder: Path) -> Path | None:
    file = folder / "model.safetensors"
    return file if file.is_file() else None


def _hf_stats(folder: Path) -> dict[str, Any] | None:
    file = folder / "preprocessor_config.json"
    if not file.is_file():
        return None
    processor = json.loads(file.read_text())
    if "image_mean" not in processor or "image_std" not in processor:
        return None
    mean, std = processor["image_mean"], processor["image_std"]
    mean = [float(mean)] * 3 if isinstance(mean, int | float) else [float(v) for v in mean]
    std = [float(std)] * 3 if isinstance(std, int | float) else [float(v) for v in std]
    return {"mean": mean, "std": std, "source": f"image processor of {folder.name}"}


def _vision_config(config: dict[str, Any], where: str):
    """The transformers config object of a vision model (an image–text model's vision tower)."""
    from transformers import CONFIG_MAPPING, MODEL_MAPPING, AutoConfig

    from multicon.encoders.hf_models import code_free_params

    model_type = config["model_type"]
    if model_type not in CONFIG_MAPPING:
        raise unknown_name(model_type, list(CONFIG_MAPPING.keys()), f"model_type in {where}")
    cfg = AutoConfig.for_model(model_type, **code_free_params(config, where))
    model_class = MODEL_MAPPING.get(type(cfg), None)
    if model_class is not None and model_class.main_input_name == "pixel_values":
        return cfg
    vision = getattr(cfg, "vision_config", None)  # CLIP, SigLIP: take the image tower
    if vision is not None and MODEL_MAPPING.get(type(vision), None) is not None:
        if MODEL_MAPPING[type(vision)].main_input_name == "pixel_values":
            return vision
    takes = model_class.main_input_name if model_class is not None else "no AutoModel"
    raise ValueError(
        f"{where} holds a {model_type!r} model, which takes {takes}, not images: an hf: "
        "backbone must be a vision model (ViT, DINOv2, CLIP or SigLIP vision, ConvNeXt, ...)"
    )


class HFVisionBackbone(nn.Module):
    """A transformers vision model pooled to one vector per image: ``pooler_output`` where the
    model gives one, else the mean of ``last_hidden_state`` over tokens (or positions)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        params = inspect.signature(model.forward).parameters
        # position embeddings resized to other image sizes (ViT, CLIP, SigLIP; DINOv2 always)
        interpolate = "interpolate_pos_encoding" in params
        self._kwargs = {"interpolate_pos_encoding": True} if interpolate else {}

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        out = self.model(pixel_values=images, **self._kwargs)
        pooled = getattr(out, "pooler_output", None)
        if pooled is not None:
            return pooled.flatten(1)
        hidden = out.last_hidden_state
        return hidden.mean(dim=1) if hidden.dim() == 3 else hidden.flatten(2).mean(dim=2)


def _hf_backbone(config: dict[str, Any], where: str, folder: Path | None) -> Backbone:
    from transformers import MODEL_MAPPING

    from multicon.encoders.hf_models import transformer_config

    cfg = _vision_config(config, where)
    model_class = MODEL_MAPPING[type(cfg)]
    weights = _hf_weights(folder) if folder is not None else None
    if weights is not None:
        model, info = model_class.from_pretrained(
            str(folder),
            config=cfg,
            trust_remote_code=False,
            use_safetensors=True,
            output_loading_info=True,
        )
        if info["missing_keys"]:
            raise ValueError(
                f"{weights} does not hold the {cfg.model_type} weights: missing "
                f"{sorted(info['missing_keys'])[:5]}"
            )
    else:
        model = model_class(cfg)
    # masked-image-modelling tokens are used only with bool_masked_pos: no gradient ever
    for name, p in model.named_parameters():
        if name.endswith("mask_token"):
            p.requires_grad_(False)
    module = HFVisionBackbone(model)
    size = getattr(cfg, "image_size", 224)
    size = size if isinstance(size, int) else 224
    was = model.training
    model.eval()
    with torch.no_grad():  # the feature size, found by running one image
        feature_dim = module(torch.zeros(1, getattr(cfg, "num_channels", 3), size, size)).shape[1]
    model.train(was)
    stats = _hf_stats(folder) if weights is not None else None
    saved = {"arch": "hf", "weights": "", "hf_config": transformer_config(cfg)}
    return Backbone(module, int(feature_dim), stats, saved)


# -- timm ------------------------------------------------------------------------------------
def _timm():
    try:
        import timm
    except ImportError:
        raise ImportError(
            "timm: backbones need timm, which is not installed: pip install timm "
            "(or pip install 'multicon[timm]')"
        ) from None
    return timm


def _timm_stats(name: str, cfg) -> dict[str, Any] | None:
    cfg = cfg if isinstance(cfg, dict) else getattr(cfg, "__dict__", {})
    if "mean" not in cfg or "std" not in cfg:
        return None
    mean, std = [float(v) for v in cfg["mean"]], [float(v) for v in cfg["std"]]
    return {"mean": mean, "std": std, "source": f"timm {name} pretrained_cfg"}


def _timm_backbone(name: str, weights: str) -> Backbone:
    timm = _timm()
    if not timm.is_model(name):
        raise unknown_name(name, timm.list_models(), "timm model")
    if weights not in ("", "pretrained"):
        raise ValueError(f"--backbone_weights for timm is '' or 'pretrained', got {weights!r}")
    net = timm.create_model(name, pretrained=bool(weights), num_classes=0)
    size = tuple(net.pretrained_cfg.get("input_size", (3, 224, 224)))
    was = net.training
    net.eval()
    with torch.no_grad():  # the pooled feature size (pre-logits layers included)
        feature_dim = net(torch.zeros(1, *size)).shape[1]
    net.train(was)
    stats = _timm_stats(name, net.pretrained_cfg) if weights else None
    return Backbone(net, int(feature_dim), stats, {"arch": f"timm:{name}", "weights": ""})
