"""Zero-shot classification with a dual encoder: class names → prompts → text embeddings.

Each class is the mean of its normalised prompt embeddings ("a photo of a {label}."), as CLIP
builds its zero-shot heads; an image is given the class whose embedding is nearest.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch
import torch.nn.functional as F

from multicon.progress import progress as progress_bar

DEFAULT_TEMPLATES = (
    "a photo of a {}.",
    "a picture of a {}.",
    "an image of a {}.",
    "a photo of the {}.",
)


@torch.no_grad()
def zero_shot_classifier(
    model, class_names: Sequence[str], templates: Sequence[str] = DEFAULT_TEMPLATES
) -> torch.Tensor:
    """``(C, D)`` unit class embeddings from ``templates`` filled with each class name."""
    if not class_names:
        raise ValueError("zero-shot classification needs at least one class name")
    for t in templates:
        if "{}" not in t:
            raise ValueError(f"prompt template {t!r} has no '{{}}' for the class name")
    was_training = model.training
    model.eval()
    weights = []
    for name in class_names:
        z = model.encode_text([t.format(name) for t in templates])
        weights.append(F.normalize(z.mean(0), dim=-1))
    model.train(was_training)
    return torch.stack(weights)


@torch.no_grad()
def zero_shot_predict(
    model,
    images: Iterable,
    classifier: torch.Tensor,
    *,
    batch_size: int = 256,
    progress: bool = False,
    total: int | None = None,
) -> torch.Tensor:
    """Class index of each PIL image (or image tensor) under a `zero_shot_classifier`.
    ``progress``: a tqdm bar (main process only) counting images, out of ``total`` if given."""
    was_training = model.training
    model.eval()
    preds, batch = [], []

    def flush():
        stacked = torch.stack(batch) if isinstance(batch[0], torch.Tensor) else batch
        z = model.encode_image(stacked)
        preds.append((z @ classifier.to(z.device).T).argmax(1).cpu())
        batch.clear()

    transform = model.image_transform(train=False)
    images = progress_bar(images, enabled=progress, total=total, desc="zero-shot", unit="img")
    for image in images:
        batch.append(image if isinstance(image, torch.Tensor) else transform(image.convert("RGB")))
        if len(batch) == batch_size:
            flush()
    if batch:
        flush()
    model.train(was_training)
    return torch.cat(preds) if preds else torch.zeros(0, dtype=torch.long)


def zero_shot_accuracy(
    model,
    dataset,
    *,
    image_column: str = "image",
    label_column: str = "label",
    class_names: Sequence[str] | None = None,
    templates: Sequence[str] = DEFAULT_TEMPLATES,
    batch_size: int = 256,
    progress: bool = False,
) -> dict[str, float]:
    """Zero-shot top-1 accuracy (percent) on a labelled `datasets` image dataset
    (``progress``: a tqdm bar over its images).

    Class names default to the label column's `ClassLabel` names (e.g. CIFAR-10's
    ``load_dataset("parquet", data_dir=".../cifar10")["test"]`` with ``image_column="img"``).
    """
    import datasets

    for col in (image_column, label_column):
        if col not in dataset.column_names:
            raise ValueError(
                f"dataset has no column {col!r}; its columns are {dataset.column_names}"
            )
    if not isinstance(dataset.features[image_column], datasets.Image):
        raise ValueError(
            f"column {image_column!r} is not an image column (it holds "
            f"{dataset.features[image_column]})"
        )
    if class_names is None:
        feature = dataset.features[label_column]
        if not isinstance(feature, datasets.ClassLabel):
            raise ValueError(
                f"column {label_column!r} is {feature}, not a ClassLabel: pass class_names"
            )
        class_names = feature.names
    labels = torch.as_tensor(dataset[label_column], dtype=torch.long)
    if len(labels) and (int(labels.min()) < 0 or int(labels.max()) >= len(class_names)):
        raise ValueError(f"labels fall outside the {len(class_names)} class names")
    classifier = zero_shot_classifier(model, [n.replace("_", " ") for n in class_names], templates)
    images = (row[image_column] for row in dataset.select_columns([image_column]))
    preds = zero_shot_predict(
        model, images, classifier, batch_size=batch_size, progress=progress, total=len(labels)
    )
    return {"zero_shot/top1": 100.0 * (preds == labels).float().mean().item()}
