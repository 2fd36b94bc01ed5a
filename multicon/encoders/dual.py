"""A dual encoder (CLIP): an image tower and a text tower embedding into one space.

`DualEncoder` is what users keep: towers, the learned temperature and the tokenizer, saved
together (``model.safetensors`` + ``config.json`` + tokenizer files). It knows no engine: train
it with `multicon.methods.clip` (in-batch negatives), `albef` (momentum towers + two queues) or
`clip_feature_queue` over its towers, sharing its ``log_logit_scale`` so the saved model keeps
the temperature it learned.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from multicon.encoders.hf_models import transformer_config
from multicon.encoders.image import BackboneImageTower, ResNetImageTower, ViTImageTower
from multicon.encoders.pooled import PooledImageTower, PooledTextTower
from multicon.encoders.text import TextTower
from multicon.encoders.tower import Tower
from multicon.hub.model import HubModel
from multicon.pairs.views import IMAGENET_MEAN, IMAGENET_STD

logger = logging.getLogger(__name__)


def build_image_tower(spec: dict[str, Any], embed_dim: int, frozen: bool) -> Tower:
    """``{"kind": "resnet", "arch": "resnet18", "cifar_stem": False, "norm": "batch"}`` or
    ``{"kind": "vit", "config": {...}, "pooling": "cls"}`` or ``{"kind": "backbone", "arch":
    "torchvision:convnext_tiny"}`` (`BackboneImageTower`) → an image tower."""
    spec = dict(spec)
    kind = spec.pop("kind", None)
    if kind == "resnet":
        return ResNetImageTower(embed_dim=embed_dim, frozen=frozen, **spec)
    if kind == "vit":
        return ViTImageTower(embed_dim=embed_dim, frozen=frozen, **spec)
    if kind == "backbone":
        return BackboneImageTower(embed_dim=embed_dim, frozen=frozen, **spec)
    if kind == "pooled":  # CLIP's / SigLIP's vision model (multicon.encoders.pretrained)
        return PooledImageTower(embed_dim=embed_dim, frozen=frozen, **spec)
    raise ValueError(
        f"image tower 'kind' must be 'backbone', 'resnet' or 'vit' (or 'pooled', a CLIP/SigLIP "
        f"vision model), got {kind!r} in {spec}"
    )


def build_text_tower(spec: dict[str, Any], embed_dim: int, frozen: bool) -> Tower:
    """``{"config": {...}, "pooling": "mean"}`` (`TextTower`) or ``{"kind": "pooled",
    "config": {...}, ...}`` (`PooledTextTower`: CLIP's / SigLIP's text model) → a text tower."""
    if "config" not in spec:
        raise ValueError(f"text_tower needs a transformers 'config', got keys {sorted(spec)}")
    spec = dict(spec)
    if spec.pop("kind", None) == "pooled":
        return PooledTextTower(embed_dim=embed_dim, frozen=frozen, **spec)
    return TextTower(spec.pop("config"), embed_dim=embed_dim, frozen=frozen, **spec)


class CentreCrop(nn.Module):
    """The centre ``size`` x ``size`` crop as transformers' image processors take it: an odd
    margin's extra pixel stays at the bottom and right (torchvision's ``CenterCrop`` rounds half
    to even, so it can take the crop one pixel lower or further right)."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = size

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        from torchvision.transforms.v2 import functional as TF

        height, width = TF.get_size(image)
        top, left = (height - self.size) // 2, (width - self.size) // 2
        return TF.crop(image, top, left, self.size, self.size)


class DualEncoder(
    HubModel,
    tags=["clip", "image-text", "zero-shot-image-classification"],
    pipeline_tag="zero-shot-image-classification",
):
    """An image tower and a text tower with projections to ``embed_dim``, plus the temperature.

    Args:
        image_tower: ``{"kind": "resnet", "arch", "cifar_stem", "norm"}`` or
            ``{"kind": "vit", "config": <transformers config dict>, "pooling"}``.
        text_tower: ``{"config": <transformers config dict>, "pooling": "mean"|"cls"}``.
            Either tower spec may add ``"pretrained": <folder or Hub id>`` to start from those
            weights; config.json then records the backbone's own config, never the path.
        embed_dim: shared embedding size.
        image_size: side of the square images the image tower sees.
        freeze_image, freeze_text: lock that tower's backbone (locked-image/text tuning).
        temperature: initial InfoNCE temperature, held as ``log_logit_scale = log(1/τ)``
            (CLIP's logit scale; the loss clamps it at 100).
        learn_temperature: learn the temperature (CLIP): ``log_logit_scale`` is a parameter;
            ``False`` keeps it a fixed buffer.
        logit_bias: SigLIP's bias ``b``, kept with the model (learned with the temperature):
            a pretrained SigLIP's, so that fine-tuning shares it with the sigmoid loss and the
            saved model keeps it; ``None`` (default) holds none.
        image_mean, image_std: the input normalisation of `image_transform`.
        image_resize: how `image_transform` brings an image to ``image_size``:
            ``"shortest_edge"`` resizes the short side and crops the centre (CLIP's processor,
            open_clip), ``"square"`` resizes to the square, whatever the aspect (SigLIP's).
        image_interpolation: ``"bilinear"`` or ``"bicubic"`` (CLIP's and SigLIP's processors),
            for those resizes and for training's random crops.
        normalize: ``{"mean", "std", "source"}`` (`multicon.encoders.normalize`): sets
            ``image_mean``/``image_std`` and records where they came from in config.json.

    Build one with pretrained parts through `create`; reload a saved one with
    ``DualEncoder.from_pretrained(folder)`` (the tokenizer comes back as ``.tokenizer``), which
    reads only that folder and runs no code from it (a ``pretrained`` entry in its config.json
    is ignored with a warning).

    Example:
        >>> bert = {"model_type": "bert", "vocab_size": 64, "hidden_size": 32,
        ...         "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 64}
        >>> model = DualEncoder({"kind": "resnet", "arch": "resnet18"}, {"config": bert},
        ...                     embed_dim=16, image_size=32)
        >>> ids = torch.randint(4, 64, (3, 6))
        >>> model.encode_text({"input_ids": ids, "attention_mask": torch.ones_like(ids)}).shape
        torch.Size([3, 16])
        >>> model.encode_image(torch.randn(2, 3, 32, 32)).norm(dim=-1).round().tolist()
        [1.0, 1.0]
    """

    def __init__(
        self,
        image_tower: dict[str, Any],
        text_tower: dict[str, Any],
        *,
        embed_dim: int = 256,
        image_size: int = 224,
        freeze_image: bool = False,
        freeze_text: bool = False,
        temperature: float = 0.07,
        learn_temperature: bool = True,
        image_mean: Sequence[float] = IMAGENET_MEAN,
        image_std: Sequence[float] = IMAGENET_STD,
        logit_bias: float | None = None,
        normalize: dict[str, Any] | None = None,
        image_resize: str = "shortest_edge",
        image_interpolation: str = "bilinear",
    ) -> None:
        super().__init__()
        if image_resize not in ("shortest_edge", "square"):
            raise ValueError(
                f"image_resize must be 'shortest_edge' or 'square', got {image_resize!r}"
            )
        if image_interpolation not in ("bilinear", "bicubic"):
            raise ValueError(
                f"image_interpolation must be 'bilinear' or 'bicubic', got {image_interpolation!r}"
            )
        if normalize is not None:
            image_mean, image_std = normalize["mean"], normalize["std"]
            if isinstance(self._hub_mixin_config, dict):  # one set of numbers in config.json
                saved = {"image_mean": list(image_mean), "image_std": list(image_std)}
                self._hub_mixin_config.update(saved)
        vit_size = image_tower.get("config", {}).get("image_size", image_size)
        if image_tower.get("kind") in ("vit", "pooled") and vit_size != image_size:
            raise ValueError(
                f"the ViT is configured for {vit_size}px images but image_size is {image_size}"
            )
        self.image = build_image_tower(image_tower, embed_dim, freeze_image)
        self.text = build_text_tower(text_tower, embed_dim, freeze_text)
        if temperature <= 0:
            raise ValueError(f"temperature must be positive, got {temperature}")
        log_scale = torch.tensor(math.log(1.0 / temperature))
        if learn_temperature:
            self.log_logit_scale = nn.Parameter(log_scale)
        else:
            self.register_buffer("log_logit_scale", log_scale)
        if logit_bias is None:
            self.logit_bias = None
        elif learn_temperature:
            self.logit_bias = nn.Parameter(torch.tensor(float(logit_bias)))
        else:
            self.register_buffer("logit_bias", torch.tensor(float(logit_bias)))
        self.embed_dim, self.image_size = embed_dim, image_size
        self.image_resize, self.image_interpolation = image_resize, image_interpolation
        self.image_mean, self.image_std = tuple(image_mean), tuple(image_std)
        self.normalize = normalize or {
            "mean": list(image_mean),
            "std": list(image_std),
            "source": "image_mean/image_std",
        }
        self.tokenizer = None
        self._record_pretrained_backbones()

    def _record_pretrained_backbones(self) -> None:
        """A tower built from ``pretrained`` weights is saved as what it is: config.json gets the
        backbone's own config and no path (its weights go to model.safetensors), so loading
        never needs, nor reads, the place the weights first came from."""
        saved = self._hub_mixin_config
        if not isinstance(saved, dict):
            return
        if isinstance(self.image, BackboneImageTower):  # an hf: path becomes its config
            saved["image_tower"] = dict(self.image.saved_spec)
        for key, tower in (("image_tower", self.image), ("text_tower", self.text)):
            spec = saved.get(key)
            if isinstance(spec, dict) and "pretrained" in spec:
                spec = {k: v for k, v in spec.items() if k != "pretrained"}
                saved[key] = {**spec, "config": transformer_config(tower.backbone.config)}

    @classmethod
    def create(
        cls,
        image_tower: dict[str, Any],
        text_tower: dict[str, Any],
        *,
        image_weights: str | Path | None = None,
        text_weights: str | Path | None = None,
        tokenizer=None,
        **kwargs: Any,
    ) -> DualEncoder:
        """Build a dual encoder whose towers may start from pretrained transformers weights.

        A ``config`` given as a folder or Hub id is resolved to its dict; ``*_weights`` loads
        that folder's weights into the tower (its config must be the tower's).
        """
        image_tower, text_tower = dict(image_tower), dict(text_tower)
        for spec, weights in ((image_tower, image_weights), (text_tower, text_weights)):
            if "config" in spec:
                spec["config"] = transformer_config(spec["config"])
            elif weights is not None:
                spec["config"] = transformer_config(weights)
        model = cls(image_tower, text_tower, **kwargs)
        for tower, weights in ((model.image, image_weights), (model.text, text_weights)):
            if weights is not None:
                if not hasattr(tower.backbone, "config"):
                    raise ValueError("pretrained weights load only into transformers towers")
                _load_backbone(tower, weights)
        model.tokenizer = tokenizer
        return model

    @property
    def temperature(self) -> float:
        """The current temperature, ``1 / min(exp(log_logit_scale), 100)``."""
        return float(1.0 / self.log_logit_scale.detach().float().exp().clamp(max=100.0))

    # -- encoding ---------------------------------------------------------------------------
    example_input = "torch.rand(2, 3, model.image_size, model.image_size)"  # for the model card

    def forward(self, inputs) -> torch.Tensor:
        """Unit embeddings of images (a tensor or PIL images) or of texts (strings or tokens)."""
        if isinstance(inputs, torch.Tensor):
            return self.encode_image(inputs)
        if hasattr(inputs, "keys") or (inputs and isinstance(inputs[0], str)):
            return self.encode_text(inputs)
        return self.encode_image(inputs)

    def image_transform(self, train: bool = False):
        """The torchvision transform from a PIL image to this model's input tensor."""
        from torchvision.transforms import v2

        size, how = self.image_size, v2.InterpolationMode(self.image_interpolation)
        if train:
            geometry = [
                v2.RandomResizedCrop(size, scale=(0.5, 1.0), interpolation=how, antialias=True)
            ]
        elif self.image_resize == "square":
            geometry = [v2.Resize((size, size), interpolation=how, antialias=True)]
        else:
            geometry = [v2.Resize(size, interpolation=how, antialias=True), CentreCrop(size)]
        return v2.Compose(
            [
                v2.ToImage(),
                *geometry,
                v2.ToDtype(torch.float32, scale=True),
                v2.Normalize(self.image_mean, self.image_std),
            ]
        )

    def tokenize(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        """Padded, truncated ``input_ids`` and ``attention_mask`` for ``texts``."""
        if self.tokenizer is None:
            raise ValueError("this DualEncoder has no tokenizer: set .tokenizer or pass tokens")
        tokens = self.tokenizer(
            list(texts), padding=True, truncation=True, return_tensors="pt", verbose=False
        )
        return {"input_ids": tokens["input_ids"], "attention_mask": tokens["attention_mask"]}

    def _device(self) -> torch.device:
        return next(self.parameters()).device

    def encode_image(self, images, normalize: bool = True) -> torch.Tensor:
        """Embed a ``(B, 3, H, W)`` tensor (already transformed) or a list of PIL images."""
        if not isinstance(images, torch.Tensor):
            transform = self.image_transform()
            images = torch.stack([transform(im.convert("RGB")) for im in images])
        z = self.image(images.to(self._device()))
        return F.normalize(z, dim=-1) if normalize else z

    def encode_text(self, texts, normalize: bool = True) -> torch.Tensor:
        """Embed a list of strings (tokenized with ``.tokenizer``) or a mapping of token tensors."""
        if isinstance(texts, str):
            raise TypeError("encode_text takes a list of strings, got one string")
        tokens = texts if hasattr(texts, "keys") else self.tokenize(texts)
        tokens = {k: v.to(self._device()) for k, v in tokens.items()}
        z = self.text(tokens)
        return F.normalize(z, dim=-1) if normalize else z

    # -- saving -----------------------------------------------------------------------------
    def _save_pretrained(self, save_directory: Path) -> None:
        super()._save_pretrained(save_directory)
        if self.tokenizer is not None:
            self.tokenizer.save_pretrained(str(save_directory))

    @classmethod
    def _from_folder(cls, folder: Path, **config: Any) -> DualEncoder:
        # A saved model is self-contained: its towers come from config.json's configs and
        # model.safetensors, never from a path or Hub id that config.json names.
        for key in ("image_tower", "text_tower"):
            spec = config.get(key)
            if isinstance(spec, dict) and spec.get("pretrained") is not None:
                logger.warning(
                    "ignored %s 'pretrained' %r in %s: a saved model loads its own weights only",
                    key,
                    spec["pretrained"],
                    folder / "config.json",
                )
            if isinstance(spec, dict) and "pretrained" in spec:
                config[key] = {k: v for k, v in spec.items() if k != "pretrained"}
        model = cls(**config)
        if (folder / "tokenizer_config.json").exists():
            from multicon.encoders.tokenization import auto_tokenizer

            model.tokenizer = auto_tokenizer(folder)
        return model

    @classmethod
    def usage_example(cls, repo_id: str) -> str:
        from multicon.hub.card import usage_snippet

        return usage_snippet(cls, repo_id, cls.example_input) + (
            "  # image embeddings; PIL images work too\n"
            'texts = model.encode_text(["a dog runs on the grass", "a red car"])\n'
            "print(embeddings @ texts.T)  # cosine similarities\n"
        )


def _load_backbone(tower: Tower, weights: str | Path) -> None:
    from multicon.encoders.hf_models import build_transformer

    pretrained = build_transformer(tower.backbone.config.to_dict(), weights)
    missing, unexpected = tower.backbone.load_state_dict(pretrained.state_dict(), strict=False)
    if missing or unexpected:
        raise ValueError(
            f"weights in {weights} do not fit the tower: missing {missing[:5]}, "
            f"unexpected {unexpected[:5]}"
        )
