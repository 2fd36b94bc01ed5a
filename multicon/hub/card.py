"""Model cards for multicon runs, built with `huggingface_hub.ModelCard`.

The card's YAML header carries ``library_name: multicon``, the method tags, the datasets, the
license and a ``model-index`` with every evaluated metric, one entry per task and dataset (so the
Hub shows them on the model page); the body says what the model was trained with, the inputs it
expects (`preprocessing`), a usage snippet, the results table (with the random-initialisation
baseline beside each trained score) and the training hyperparameters.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from huggingface_hub import EvalResult, ModelCard, ModelCardData

CARD_NAME = "README.md"
# Names whose values are never written, at any depth (a token passed as a recipe flag, an auth
# header in a nested config): anything that looks like a credential. "tokenizer" is not one.
_SECRET_NAME = re.compile(
    r"token(?!i[sz])|auth|secret|passw|passphrase|credential|cookie|bearer"
    r"|(api|access|private|secret|signing)[_-]?key",
    re.IGNORECASE,
)

CARD_TEMPLATE = """---
{{ card_data }}
---

# {{ model_name }}

{{ description }}

Trained with multicon
{%- if method_tags %} ({{ method_tags | join(", ") }}){% endif %}
{%- if datasets %} on {{ datasets | join(", ") }}{% endif %}.

{% if preprocessing %}## Preprocessing

| input | value |
|---|---|
{% for name, value in preprocessing %}| {{ name }} | {{ value }} |
{% endfor %}
{% endif %}## Usage

```python
{{ usage }}
```

Loading reads `model.safetensors` and `config.json` only; no pickled file is ever loaded.

{% if results %}## Evaluation results

{% if baseline %}"{{ baseline_label }}" is {{ baseline_note }}: the score the training added is the
difference.

| task | dataset | split | metric | value | {{ baseline_label }} |
|---|---|---|---|---|---|
{% else %}| task | dataset | split | metric | value |
|---|---|---|---|---|
{% endif %}{% for row in results %}| {{ row | join(" | ") }} |
{% endfor %}
{% endif %}{% if hyperparameters %}## Training hyperparameters

| name | value |
|---|---|
{% for name, value in hyperparameters %}| `{{ name }}` | `{{ value }}` |
{% endfor %}
{% endif %}## Framework versions

{% for name, value in versions %}- {{ name }} {{ value }}
{% endfor %}"""


def build_model_card(
    *,
    model_name: str,
    model_class: type | None = None,
    method_tags: Iterable[str] = (),
    datasets: Iterable[str] = (),
    metrics: Mapping[str, float] | Sequence[EvalResult] | None = None,
    task: str = "feature-extraction",
    split: str | None = "test",
    hyperparameters: Mapping[str, Any] | Any = None,
    usage: str | None = None,
    repo_id: str | None = None,
    license: str = "apache-2.0",
    pipeline_tag: str | None = None,
    base_model: str | None = None,
    description: str | None = None,
    baseline: Mapping[str, float] | Sequence[EvalResult] | None = None,
    preprocessing: Mapping[str, Any] | None = None,
    baseline_label: str = "random init",
    baseline_note: str = "the same evaluation of the untrained model (the same architecture and "
    "seed, before the first step)",
) -> ModelCard:
    """A `ModelCard` for a trained multicon model.

    Args:
        model_name: the card title and the ``model-index`` name.
        model_class: the saved class; its Hub tags are added and, without ``usage``, its
            `usage_example` is the usage snippet.
        method_tags: e.g. ``["simclr"]``, ``["moco"]``, ``["word2vec"]``, ``["clip"]``.
        datasets: Hub dataset ids or names the model was trained on.
        metrics: ``{"knn_top1": 0.71}`` (reported on the first dataset, for ``task`` and
            ``split``) or `EvalResult`s for full control.
        hyperparameters: a mapping, a dataclass (e.g. the recipe's `TrainConfig`) or a list of
            them; names that look like secrets (``hub_token``) are left out.
        usage: Python source for the usage section (default: with ``preprocessing`` and a
            class that has ``features``, `image_usage_snippet`; else the class's
            `usage_example`).
        repo_id: where the model lives (default: ``path/to/this/folder`` in the snippet).
        description: what the model is and the loss it was trained with (the recipes say it;
            the default names only the class).
        baseline: the same evaluations of the random-initialised model, shown beside each
            trained score (``metrics``' shape: a mapping keyed by metric, or `EvalResult`s
            matched on task, dataset, split and metric). Never in the ``model-index``.
        baseline_label, baseline_note: the baseline column's title and what it measured (a
            fine-tuned pretrained model: "before fine-tuning", the pretrained model's scores).
        preprocessing: the inputs the model expects, stated in a table: ``input_size`` (side
            in pixels), ``channels``, ``scaling`` (how pixels become floats), ``mean``,
            ``std``, ``feature_dim`` (what ``model.features`` gives); other keys are shown as
            given.

    Example:
        >>> card = build_model_card(model_name="demo", method_tags=["simclr"],
        ...     datasets=["cifar10"], metrics={"knn_top1": 0.5}, usage="print(1)")
        >>> card.data.library_name, card.data.eval_results[0].metric_value
        ('multicon', 0.5)
    """
    datasets = list(datasets)
    method_tags = list(method_tags)
    hparams = public_hyperparameters(hyperparameters)
    results = _eval_results(metrics, datasets, task, split)
    before = _baseline_values(_eval_results(baseline, datasets, task, split), results)
    if results and not datasets:
        datasets = sorted({r.dataset_type for r in results})
    tags = ["contrastive-learning", *method_tags]
    mixin_info = getattr(model_class, "_hub_mixin_info", None)
    if mixin_info is not None:
        tags += list(mixin_info.model_card_data.tags or [])
        pipeline_tag = pipeline_tag or mixin_info.model_card_data.pipeline_tag
    if usage is None:
        if model_class is None:
            raise ValueError("pass usage= (Python source) or the model_class")
        where = repo_id or "path/to/this/folder"
        if preprocessing and hasattr(model_class, "features"):
            usage = image_usage_snippet(model_class, where, preprocessing)
        elif hasattr(model_class, "usage_example"):
            usage = model_class.usage_example(where)
        else:
            usage = usage_snippet(model_class, where)
    card_data = ModelCardData(
        library_name="multicon",
        license=license,
        tags=sorted(set(tags)),
        datasets=datasets or None,
        pipeline_tag=pipeline_tag,
        base_model=base_model,
        model_name=model_name,
        eval_results=results or None,
        metrics=sorted({r.metric_type for r in results}) or None,
    )
    return ModelCard.from_template(
        card_data,
        template_str=CARD_TEMPLATE,
        model_name=model_name,
        description=description or _default_description(model_class),
        method_tags=method_tags,
        datasets=datasets,
        usage=usage.strip(),
        results=[_result_row(r, before) for r in results],
        baseline=bool(before),
        baseline_label=baseline_label,
        baseline_note=baseline_note,
        preprocessing=_preprocessing_rows(preprocessing or {}),
        hyperparameters=[(_cell(k), _cell(v if v != "" else "''")) for k, v in hparams.items()],
        versions=_versions(),
    )


def write_model_card(folder: str | Path, **card: Any) -> Path:
    """Write ``README.md`` into ``folder`` (replacing an old one); returns its path.

    Takes the keyword arguments of `build_model_card`.

    Example:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as folder:
        ...     path = write_model_card(folder, model_name="demo", usage="print(1)",
        ...                             metrics={"knn_top1": 0.5}, datasets=["cifar10"])
        ...     ModelCard.load(path).data.eval_results[0].metric_type
        'knn_top1'
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"no folder {folder} to write the model card into")
    path = folder / CARD_NAME
    build_model_card(**card).save(path)
    return path


def usage_snippet(model_class: type, repo_id: str, example_input: str | None = None) -> str:
    """Python source that loads ``model_class`` from ``repo_id`` and embeds ``example_input``.

    ``example_input`` is source for one input batch; it may use ``model`` (the loaded model).

    Example:
        >>> print(usage_snippet(ModelCard, "me/m", "torch.rand(2, 3)").splitlines()[3])
        model = ModelCard.from_pretrained("me/m")
    """
    name = model_class.__name__
    lines = ["import torch", f"from {_public_module(model_class)} import {name}", ""]
    lines.append(f'model = {name}.from_pretrained("{repo_id}")')
    if example_input is None:
        lines.append("print(model)  # call model(inputs) on a batch like the training inputs")
    else:
        lines += [
            f"inputs = {example_input}",
            "with torch.no_grad():",
            "    embeddings = model(inputs)",
            "print(embeddings.shape)",
        ]
    return "\n".join(lines)


def image_usage_snippet(model_class: type, repo_id: str, preprocessing: Mapping[str, Any]) -> str:
    """Source that loads an image model, prepares a batch as ``preprocessing`` says (size,
    channels, mean/std) and takes ``model.features``: the representation kNN and linear probes
    measure, not the projection the loss was trained on.

    Example:
        >>> src = image_usage_snippet(ModelCard, "me/m", {"input_size": 8, "channels": 1})
        >>> src.splitlines()[4]
        'images = torch.rand(2, 1, 8, 8)  # 2 images of 8x8 pixels, 1 channel, values in [0, 1]'
    """
    size, channels = _positive(preprocessing, "input_size"), _positive(preprocessing, "channels")
    name = model_class.__name__
    lines = ["import torch", f"from {_public_module(model_class)} import {name}", ""]
    lines.append(f'model = {name}.from_pretrained("{repo_id}")')
    lines.append(
        f"images = torch.rand(2, {channels}, {size}, {size})  # 2 images of {size}x{size} "
        f"pixels, {channels} channel{'s' if channels > 1 else ''}, values in [0, 1]"
    )
    mean, std = preprocessing.get("mean"), preprocessing.get("std")
    if mean is not None and std is not None and _normalises(mean, std):
        lines += [
            "# normalised with the mean and std the model was trained and evaluated with",
            f"mean = torch.tensor({_floats(mean)}).view(1, -1, 1, 1)",
            f"std = torch.tensor({_floats(std)}).view(1, -1, 1, 1)",
            "inputs = (images - mean) / std",
        ]
    else:
        lines.append("inputs = images  # no mean/std normalisation")
    lines += [
        "with torch.no_grad():",
        "    features = model.features(inputs)  # the features the kNN score was measured on",
    ]
    dim = preprocessing.get("feature_dim")
    shape = f"  # torch.Size([2, {dim}])" if dim else ""
    lines.append(f"print(features.shape){shape}")
    return "\n".join(lines)


def _positive(preprocessing: Mapping[str, Any], key: str) -> int:
    value = preprocessing.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"preprocessing[{key!r}] must be a positive int, got {value!r}")
    return value


def _normalises(mean: Sequence[float], std: Sequence[float]) -> bool:
    return any(m != 0 for m in mean) or any(s != 1 for s in std)


def _floats(values: Sequence[float]) -> str:
    return "[" + ", ".join(f"{float(v):g}" for v in values) + "]"


def _preprocessing_rows(preprocessing: Mapping[str, Any]) -> list[tuple[str, str]]:
    """The card's preprocessing table: known keys in words, others as given."""
    rows = []
    known = {"input_size", "channels", "scaling", "mean", "std", "feature_dim"}
    if "input_size" in preprocessing:
        size, channels = preprocessing["input_size"], preprocessing.get("channels")
        shown = f"{size}x{size} pixels"
        if channels:
            shown += f", {channels} channel{'s' if channels > 1 else ''}"
        rows.append(("input size", shown))
    if "scaling" in preprocessing:
        rows.append(("pixel values", str(preprocessing["scaling"])))
    mean, std = preprocessing.get("mean"), preprocessing.get("std")
    if mean is not None and std is not None:
        if _normalises(mean, std):
            rows += [("mean", _floats(mean)), ("std", _floats(std))]
        else:
            rows.append(("mean / std", "none (inputs are not normalised)"))
    if preprocessing.get("feature_dim"):
        rows.append(
            (
                "output",
                f"`model.features(x)`: {preprocessing['feature_dim']} numbers per image, the "
                "backbone features the kNN score was measured on; `model(x)` is the projection "
                "the loss was computed on",
            )
        )
    rows += [(str(k), str(v)) for k, v in preprocessing.items() if k not in known]
    return [(_cell(k), _cell(v)) for k, v in rows]


def _public_module(cls: type) -> str:
    """The shortest import path that gives ``cls`` (``multicon`` when it is re-exported)."""
    import multicon

    return "multicon" if getattr(multicon, cls.__name__, None) is cls else cls.__module__


def public_hyperparameters(hyperparameters: Mapping[str, Any] | Any) -> dict[str, Any]:
    """Flatten a mapping, dataclass or list of them into ``{name: value}``, dropping every name
    that looks like a credential (token, auth, password, secret, api_key ...), nested ones too.

    Example:
        >>> public_hyperparameters({"lr": 0.1, "hub_token": "hf_x", "hub": {"Authorization": "x"}})
        {'lr': 0.1, 'hub': {}}
    """
    if hyperparameters is None:
        return {}
    if isinstance(hyperparameters, list | tuple):
        merged: dict[str, Any] = {}
        for part in hyperparameters:
            merged.update(public_hyperparameters(part))
        return merged
    if dataclasses.is_dataclass(hyperparameters) and not isinstance(hyperparameters, type):
        hyperparameters = dataclasses.asdict(hyperparameters)
    if not isinstance(hyperparameters, Mapping):
        raise TypeError(
            "hyperparameters must be a mapping, a dataclass or a list of them, got "
            f"{type(hyperparameters).__name__}"
        )
    return _without_secrets(hyperparameters)


def _without_secrets(value: Any) -> Any:
    """``value`` with every credential-looking key dropped from its mappings, at any depth."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = dataclasses.asdict(value)
    if isinstance(value, Mapping):
        return {
            str(k): _without_secrets(v) for k, v in value.items() if not _SECRET_NAME.search(str(k))
        }
    if isinstance(value, list | tuple):
        kept = [_without_secrets(v) for v in value]
        return kept if isinstance(value, list) else tuple(kept)
    return value


def _eval_results(
    metrics: Mapping[str, float] | Sequence[EvalResult] | None,
    datasets: list[str],
    task: str,
    split: str | None,
) -> list[EvalResult]:
    if not metrics:
        return []
    if isinstance(metrics, Mapping):
        if not datasets:
            raise ValueError("metrics given as a mapping need datasets= to say what they measure")
        results = []
        for name, value in metrics.items():
            if not isinstance(value, int | float) or isinstance(value, bool):
                raise TypeError(f"metric {name!r} must be a number, got {value!r}")
            if not math.isfinite(value):  # NaN in the card's YAML reads as a measured value
                raise ValueError(f"metric {name!r} is {value}: leave out what was not measured")
            results.append(
                EvalResult(
                    task_type=task,
                    dataset_type=datasets[0],
                    dataset_name=datasets[0],
                    dataset_split=split,
                    metric_type=str(name),
                    metric_value=float(value),
                )
            )
        return results
    results = list(metrics)
    for result in results:
        if not isinstance(result, EvalResult):
            raise TypeError(f"metrics must be a mapping or EvalResults, got {result!r}")
    return results


def _default_description(model_class: type | None) -> str:
    # the loss is the recipe's to state: a default that named one was wrong for the others
    if model_class is None:
        return "Embeddings trained with multicon."
    return f"A `{model_class.__name__}` trained with multicon."


def _result_key(result: EvalResult) -> tuple:
    return (result.task_type, result.dataset_type, result.dataset_split, result.metric_type)


def _baseline_values(baseline: list[EvalResult], results: list[EvalResult]) -> dict[tuple, float]:
    """Random-init values keyed like ``results``; one with no trained score is an error."""
    values = {_result_key(r): r.metric_value for r in baseline}
    unmatched = values.keys() - {_result_key(r) for r in results}
    if unmatched:
        raise ValueError(f"baseline scores with no trained score beside them: {sorted(unmatched)}")
    return values


def _shown(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def _result_row(result: EvalResult, baseline: Mapping[tuple, float]) -> list[str]:
    metric = result.metric_type
    if result.metric_name and result.metric_name != metric:
        metric = f"{result.metric_name} (`{metric}`)"
    dataset = result.dataset_name or result.dataset_type
    cells = [result.task_name or result.task_type, dataset, result.dataset_split or "", metric]
    row = [_cell(c) for c in cells] + [_shown(result.metric_value)]
    if baseline:
        before = baseline.get(_result_key(result))
        row.append("" if before is None else _shown(before))
    return row


def _cell(value: Any) -> str:
    """Text safe inside a Markdown table cell."""
    return str(value).replace("|", "\\|").replace("\n", " ")


def _versions() -> list[tuple[str, str]]:
    found = []
    for package in ("multicon", "torch", "huggingface_hub", "safetensors"):
        try:
            found.append((package, version(package)))
        except PackageNotFoundError:
            continue
    return found
