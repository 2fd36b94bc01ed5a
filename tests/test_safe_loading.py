"""Loading is safe: a saved model reads only its own folder's safetensors and JSON, runs no code
and follows no path from its config; CIFAR pickles unpickle only arrays, lists, dicts and text;
the Hub token never survives in an error, and credentials never reach a model card."""

from __future__ import annotations

import builtins
import json
import os
import pickle
import traceback
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from hub_fake import TOKEN
from huggingface_hub.utils import filter_repo_objects

from multicon.data import load_cifar, load_images
from multicon.encoders.dual import DualEncoder
from multicon.hub import model as hub_model
from multicon.hub.card import build_model_card, public_hyperparameters
from multicon.hub.push import redact_token

BERT = {
    "model_type": "bert",
    "vocab_size": 40,
    "hidden_size": 16,
    "num_hidden_layers": 1,
    "num_attention_heads": 2,
    "intermediate_size": 32,
    "max_position_embeddings": 32,
}
VIT = {
    "model_type": "vit",
    "image_size": 16,
    "patch_size": 8,
    "hidden_size": 16,
    "num_hidden_layers": 1,
    "num_attention_heads": 2,
    "intermediate_size": 32,
}
TOWER_CONFIG = {"text_tower": BERT, "image_tower": VIT}


def tiny_dual(text: dict | None = None, image: dict | None = None) -> DualEncoder:
    """A randomly initialised dual encoder: a tiny ViT and a tiny BERT."""
    return DualEncoder(
        {"kind": "vit", "config": VIT, **(image or {})},
        {"config": BERT, **(text or {})},
        embed_dim=8,
        image_size=16,
    ).eval()


def embed(model: DualEncoder) -> torch.Tensor:
    """Both towers' embeddings of fixed inputs."""
    g = torch.Generator().manual_seed(1)
    images = torch.rand(2, 3, 16, 16, generator=g)
    ids = torch.randint(4, 30, (2, 5), generator=g)
    with torch.no_grad():
        texts = model.encode_text({"input_ids": ids, "attention_mask": torch.ones_like(ids)})
        return torch.cat([model.encode_image(images), texts])


def other_backbone(folder: Path, config: dict) -> Path:
    """A transformers model of the same shapes with other weights and another activation,
    saved as transformers saves (safetensors + config.json)."""
    from transformers import AutoConfig, AutoModel

    torch.manual_seed(123)
    params = {k: v for k, v in config.items() if k != "model_type"} | {"hidden_act": "relu"}
    AutoModel.from_config(AutoConfig.for_model(config["model_type"], **params)).save_pretrained(
        folder
    )
    return folder


def edit_json(path: Path, change: Callable[[dict], None]) -> None:
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


@pytest.fixture
def asked(monkeypatch, tmp_path) -> list[str]:
    """Every prompt anything showed, each answered "y" as a hurried user might: transformers asks
    before it runs a repo's code, and a yes runs it. (Code it would run is copied under
    ``tmp_path``, not the user's cache.)"""
    import sys

    from transformers import dynamic_module_utils

    prompts: list[str] = []

    def yes(prompt: str = "") -> str:
        prompts.append(prompt)
        return "y"

    monkeypatch.setattr(builtins, "input", yes)
    monkeypatch.setattr(dynamic_module_utils, "HF_MODULES_CACHE", str(tmp_path / "modules"))
    monkeypatch.setattr(sys, "path", list(sys.path))
    return prompts


@pytest.fixture
def model_loads(monkeypatch) -> list[tuple]:
    """Every transformers `AutoModel.from_pretrained` call (weights from some other place)."""
    from transformers import AutoModel

    calls: list[tuple] = []
    original = AutoModel.from_pretrained

    def spy(*args, **kwargs):
        calls.append(args)
        return original(*args, **kwargs)

    monkeypatch.setattr(AutoModel, "from_pretrained", spy)
    return calls


def write_code(folder: Path, marker: Path) -> None:
    """Python files that would leave ``marker`` behind if anything imported them."""
    body = f"import pathlib\npathlib.Path({str(marker)!r}).write_text('code ran')\n"
    for name in ("__init__", "modeling_evil", "configuration_evil", "tokenization_evil"):
        classes = "class EvilModel: pass\nclass EvilConfig: pass\nclass EvilTokenizer: pass\n"
        (folder / f"{name}.py").write_text(body + classes)


# -- a saved model never follows a path from its config ------------------------------------------
@pytest.mark.parametrize("tower", ["text_tower", "image_tower"])
@pytest.mark.parametrize("source", ["folder", "repo"])
def test_a_pretrained_entry_in_config_json_is_never_followed(
    tower, source, tmp_path, model_loads, caplog
):
    model = tiny_dual()
    folder = tmp_path / "model"
    model.save_pretrained(folder)
    if source == "folder":  # same shapes, other weights, another activation
        target = str(other_backbone(tmp_path / "other", TOWER_CONFIG[tower]))
    else:
        target = "someone/other-weights"
    edit_json(folder / "config.json", lambda c: c[tower].update(pretrained=target))

    loaded = DualEncoder.from_pretrained(folder)

    assert torch.equal(embed(loaded), embed(model))  # the folder's own weights and config
    assert model_loads == []  # nothing read from the other place
    assert f"ignored {tower} 'pretrained'" in caplog.text and "config.json" in caplog.text


def test_a_model_created_from_a_pretrained_backbone_saves_its_weights_not_the_path(tmp_path):
    backbone = other_backbone(tmp_path / "minilm", BERT)
    model = tiny_dual(text={"pretrained": str(backbone)})  # the backbone's relu, not BERT's gelu
    assert model.text.backbone.config.hidden_act == "relu"
    folder = tmp_path / "model"
    model.save_pretrained(folder)
    saved = json.loads((folder / "config.json").read_text())
    assert "pretrained" not in saved["text_tower"] and str(backbone) not in json.dumps(saved)
    assert saved["text_tower"]["config"]["hidden_act"] == "relu"  # what the tower really is
    for path in backbone.iterdir():  # loading must not need it
        path.unlink()
    backbone.rmdir()
    assert torch.equal(embed(DualEncoder.from_pretrained(folder)), embed(model))


def test_python_files_in_a_model_folder_are_never_imported(tmp_path, asked):
    model = tiny_dual()
    folder = tmp_path / "model"
    model.save_pretrained(folder)
    marker = tmp_path / "code-ran"
    write_code(folder, marker)
    remote = {"AutoConfig": "configuration_evil.EvilConfig", "AutoModel": "modeling_evil.EvilModel"}
    edit_json(folder / "config.json", lambda c: c["text_tower"]["config"].update(auto_map=remote))

    loaded = DualEncoder.from_pretrained(folder)

    assert torch.equal(embed(loaded), embed(model))
    assert asked == [] and not marker.exists()


def test_a_hub_kernel_named_in_a_tower_config_is_refused(tmp_path, monkeypatch):
    folder = tmp_path / "model"
    tiny_dual().save_pretrained(folder)
    kernel = "kernels-community/evil-attention"
    edit_json(
        folder / "config.json",
        lambda c: c["text_tower"]["config"].update(attn_implementation=kernel),
    )
    with pytest.raises(ValueError, match=r"attn_implementation.*kernels-community/evil-attention"):
        DualEncoder.from_pretrained(folder)


def saved_with_tokenizer(folder: Path) -> DualEncoder:
    from multicon.encoders.tokenization import train_sentencepiece_tokenizer

    model = tiny_dual()
    model.tokenizer = train_sentencepiece_tokenizer(
        ["a red square", "a blue circle"] * 10, vocab_size=30
    )
    model.save_pretrained(folder)
    return model


def test_a_config_asking_for_custom_code_neither_prompts_nor_runs_it(tmp_path, asked):
    folder = tmp_path / "model"
    model = saved_with_tokenizer(folder)
    marker = tmp_path / "code-ran"
    write_code(folder, marker)
    custom = {"model_type": "evil", "auto_map": {"AutoConfig": "configuration_evil.EvilConfig"}}
    edit_json(folder / "config.json", lambda c: c.update(custom))

    loaded = DualEncoder.from_pretrained(folder)

    assert (
        loaded.tokenizer("a red circle")["input_ids"]
        == model.tokenizer("a red circle")["input_ids"]
    )
    assert asked == [] and not marker.exists()


def test_a_tokenizer_asking_for_custom_code_is_refused_without_a_prompt(tmp_path, asked):
    folder = tmp_path / "model"
    saved_with_tokenizer(folder)
    marker = tmp_path / "code-ran"
    write_code(folder, marker)
    ref = "tokenization_evil.EvilTokenizer"
    edit_json(
        folder / "tokenizer_config.json",
        lambda c: c.update(tokenizer_class="EvilTokenizer", auto_map={"AutoTokenizer": [ref, ref]}),
    )
    with pytest.raises(ValueError, match=r"tokenizer_config.json asks to run code \(auto_map"):
        DualEncoder.from_pretrained(folder)
    assert asked == [] and not marker.exists()


# -- Hub downloads fetch only safetensors, JSON and tokenizer files ------------------------------


NEVER_FETCHED = [
    "modeling_evil.py",
    "__init__.py",
    "sub/tokenization_evil.py",
    "pytorch_model.bin",
    "model.pt",
    "weights.pth",
    "data.pkl",
    "run.sh",
    "checkpoints/step-1/model.safetensors",
    "checkpoint-5/config.json",
]


def test_hub_downloads_fetch_only_safetensors_json_and_tokenizer_files(
    hub, tmp_path, monkeypatch, asked
):
    model = saved_with_tokenizer(tmp_path / "local")
    model.push_to_hub("fake-user/dual", token=TOKEN)
    repo = hub.repos["fake-user/dual"]
    for name in NEVER_FETCHED:
        repo["files"][name] = b"import os\nos.system('touch pwned')\n"
    pushed = sorted(n for n in repo["files"] if n not in NEVER_FETCHED)
    downloads: list[dict] = []
    original = hub_model.snapshot_download

    def spy(**kwargs):
        downloads.append(kwargs)
        return original(**kwargs)

    monkeypatch.setattr(hub_model, "snapshot_download", spy)
    hub.requests.clear()

    loaded = DualEncoder.from_pretrained("fake-user/dual", token=TOKEN, cache_dir=tmp_path / "c")

    assert torch.equal(embed(loaded), embed(model))
    fetched = {
        url.split("/resolve/", 1)[1].split("/", 1)[1]
        for method, url in hub.requests
        if "/resolve/" in url
    }
    assert sorted(fetched) == [n for n in pushed if n != "README.md"]
    (call,) = downloads  # the patterns themselves: nothing else could get through
    kept = list(filter_repo_objects(NEVER_FETCHED + pushed, **_patterns(call)))
    assert sorted(kept) == [n for n in pushed if n != "README.md"]
    assert asked == []


def _patterns(call: dict) -> dict:
    return {k: call.get(k) for k in ("allow_patterns", "ignore_patterns")}


# -- CIFAR pickles: only what a CIFAR batch holds -------------------------------------------------
def write_cifar(root: Path, protocol: int = pickle.DEFAULT_PROTOCOL, legacy_names=False):
    """The python-pickle layout of CIFAR-10 (cifar-10-batches-py/): dicts of numpy arrays, lists,
    strings and bytes, as the official files hold. ``legacy_names`` writes numpy 1's module
    names (``numpy.core.multiarray``), as the official files (pickled by numpy 1) name them."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    batches = {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batches[name] = {
            "batch_label": f"{name} of 5",
            "labels": rng.integers(0, 10, 3).tolist(),
            "data": rng.integers(0, 256, (3, 3072), dtype=np.uint8),
            "filenames": [f"img_{i}.png".encode() for i in range(3)],
        }
    meta = {"label_names": [f"c{i}" for i in range(10)], "num_cases_per_batch": 3, "num_vis": 3072}
    for name, content in [*batches.items(), ("batches.meta", meta)]:
        data = pickle.dumps(content, protocol=protocol)
        if legacy_names:
            data = data.replace(b"numpy._core.", b"numpy.core.")
        (folder / name).write_bytes(data)
    return batches


@pytest.mark.parametrize("protocol,legacy_names", [(2, True), (2, False), (4, False), (5, False)])
def test_real_format_cifar_batches_load(tmp_path, protocol, legacy_names):
    batches = write_cifar(tmp_path, protocol, legacy_names)
    if legacy_names:
        assert (
            b"numpy.core.multiarray" in (tmp_path / "cifar-10-batches-py/test_batch").read_bytes()
        )
    test = load_images(tmp_path, "test")
    train = load_cifar(tmp_path, split="train")
    assert train.images.shape == (15, 3, 32, 32) and train.classes == [f"c{i}" for i in range(10)]
    assert test.labels.tolist() == batches["test_batch"]["labels"]
    expected = torch.from_numpy(batches["test_batch"]["data"].reshape(3, 3, 32, 32))
    assert torch.equal(test.images, expected)


class Exploit:
    """Pickles to ``os.system(touch marker)``: unpickling it runs a shell command."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


class ExploitByEval(Exploit):
    def __reduce__(self):
        return (builtins.eval, (f"open({str(self.marker)!r}, 'w')",))


@pytest.mark.parametrize("victim", ["data_batch_1", "test_batch", "batches.meta"])
@pytest.mark.parametrize("exploit", [Exploit, ExploitByEval])
def test_a_crafted_cifar_pickle_is_refused_and_runs_nothing(tmp_path, victim, exploit):
    write_cifar(tmp_path)
    marker = tmp_path / "pwned"
    path = tmp_path / "cifar-10-batches-py" / victim
    content = pickle.loads(path.read_bytes())
    content["label_names" if victim == "batches.meta" else "labels"].append(exploit(marker))
    path.write_bytes(pickle.dumps(content))
    refused = "posix.system" if exploit is Exploit else "builtins.eval"
    with pytest.raises(ValueError, match=rf"refused to unpickle .*{victim}: it names {refused}"):
        load_cifar(tmp_path, split="test" if victim == "test_batch" else "train")
    assert not marker.exists()


# -- the Hub token never survives in an error ---------------------------------------------------
def exception_chain(error: BaseException) -> list[BaseException]:
    seen, todo = [], [error]
    while todo:
        e = todo.pop()
        if e is not None and all(e is not s for s in seen):
            seen.append(e)
            todo += [e.__cause__, e.__context__]
    return seen


def test_redact_token_keeps_no_trace_of_the_original_error():
    def fail():
        raise OSError(f"403 for headers {{'authorization': 'Bearer {TOKEN}'}}")

    with pytest.raises(RuntimeError, match="OSError: 403 for headers .*Bearer <token>") as caught:
        with redact_token(TOKEN):
            fail()
    chain = exception_chain(caught.value)
    assert len(chain) == 1, [repr(e) for e in chain]  # neither __context__ nor __cause__
    for error in chain:
        assert TOKEN not in str(error) + repr(error) + repr(error.args)
    assert TOKEN not in "".join(traceback.format_exception(caught.value))
    assert TOKEN not in "".join(traceback.format_tb(caught.value.__traceback__))
    tb = caught.value.__traceback__
    while tb is not None:  # no frame of the traceback keeps the original error either
        for name, value in tb.tb_frame.f_locals.items():
            if isinstance(value, BaseException):
                assert TOKEN not in str(value), (tb.tb_frame.f_code.co_name, name)
        tb = tb.tb_next


def test_redact_token_lets_other_errors_through_untouched():
    with pytest.raises(KeyError) as caught:
        with redact_token(TOKEN):
            raise KeyError("no token here")
    assert caught.type is KeyError and caught.value.args == ("no token here",)


# -- model cards never show a credential ---------------------------------------------------------
SECRET_NAMES = [
    "hub_token",
    "HF_TOKEN",
    "auth",
    "Authorization",
    "hf_auth_header",
    "password",
    "db_passwd",
    "client_secret",
    "api_key",
    "OPENAI_API-KEY",
    "aws_access_key",
    "private_key",
    "credentials",
    "Cookie",
]


def test_card_hyperparameters_drop_every_credential_looking_name_nested_too():
    params = {name: f"s3cr3t-{i}" for i, name in enumerate(SECRET_NAMES)}
    params |= {"lr": 0.1, "tokenizer": "minilm", "nested": {"lr": 0.2, "Auth": "s3cr3t-n"}}
    params["servers"] = [{"url": "https://x", "api_key": "s3cr3t-l"}]
    public = public_hyperparameters(params)
    assert public == {
        "lr": 0.1,
        "tokenizer": "minilm",
        "nested": {"lr": 0.2},
        "servers": [{"url": "https://x"}],
    }
    card = str(build_model_card(model_name="m", usage="print(1)", hyperparameters=params))
    assert "s3cr3t" not in card and "minilm" in card
