"""multicon.hub: save → load round trips, model cards, and pushes through a fake Hub."""

from __future__ import annotations

import json
import logging
import os
import pickle
import re
import runpy
import subprocess
import sys
import traceback
from collections.abc import Callable
from pathlib import Path

import pytest
import safetensors.torch
import torch
import yaml
from hub_fake import TOKEN
from huggingface_hub import ModelCard, ModelHubMixin, PyTorchModelHubMixin, constants
from torch import nn

from multicon.hub import HubArgs, HubModel, maybe_push, push_folder, save_run, write_model_card

push_tool = runpy.run_path(str(Path(__file__).parents[1] / "tools" / "push_to_hub.py"))


class TinyEncoder(HubModel, tags=["image"], pipeline_tag="image-feature-extraction"):
    """Conv + BatchNorm (running stats are buffers) + a weight tied between two layers."""

    example_input = "torch.rand(2, 3, 8, 8)"

    def __init__(self, width: int = 4, out_dim: int = 3, dropout: float = 0.5):
        super().__init__()
        self.conv = nn.Conv2d(3, width, 3, padding=1)
        self.norm = nn.BatchNorm2d(width)
        self.drop = nn.Dropout(dropout)
        self.proj = nn.Linear(width, out_dim, bias=False)
        self.unproj = nn.Linear(out_dim, width, bias=False)
        self.unproj.weight = nn.Parameter(self.proj.weight.T.contiguous())
        self.tied = nn.Linear(width, width)
        self.tied_again = nn.Linear(width, width)
        self.tied_again.weight = self.tied.weight  # shared tensor: saved once, re-tied on load
        self.register_buffer("steps", torch.zeros((), dtype=torch.long))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.drop(self.norm(self.conv(x)).relu().mean((2, 3)))
        return self.proj(self.tied_again(self.tied(h))) + self.steps


def trained_encoder(**kwargs) -> TinyEncoder:
    """An encoder whose weights and buffers are all far from their initial values."""
    torch.manual_seed(0)
    model = TinyEncoder(**kwargs)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    for _ in range(3):
        loss = model(torch.rand(8, 3, 8, 8)).pow(2).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
        model.steps += 1
    return model.eval()


def run_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "run"
    save_run(
        folder,
        trained_encoder(width=5),
        model_name="tiny-simclr",
        method_tags=["simclr"],
        datasets=["cifar10"],
        metrics={"knn_top1": 0.8125, "linear_top1": 0.75},
        hyperparameters={"lr": 0.3, "batch_size": 256, "hub_token": TOKEN},
    )
    (folder / "checkpoints").mkdir()
    (folder / "checkpoints" / "state.pt").write_bytes(b"optimizer state")
    (folder / "optimizer.bin").write_bytes(b"pickle")
    return folder


# -- save → load ----------------------------------------------------------------------------
def test_round_trip_gives_identical_outputs(tmp_path):
    model = trained_encoder(width=6, out_dim=2)
    model.save_pretrained(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "README.md",
        "config.json",
        "model.safetensors",
    ]
    assert json.loads((tmp_path / "config.json").read_text()) == {
        "dropout": 0.5,
        "out_dim": 2,
        "width": 6,
    }
    loaded = TinyEncoder.from_pretrained(tmp_path)
    assert not loaded.training
    assert loaded.tied_again.weight is loaded.tied.weight
    assert loaded.steps.item() == 3
    x = torch.rand(4, 3, 8, 8)
    assert torch.equal(model(x), loaded(x))
    for (name, a), (_, b) in zip(
        model.state_dict().items(), loaded.state_dict().items(), strict=True
    ):
        assert torch.equal(a, b), name


def test_from_pretrained_overrides_config_with_kwargs(tmp_path):
    trained_encoder().save_pretrained(tmp_path)
    assert TinyEncoder.from_pretrained(tmp_path, dropout=0.0).drop.p == 0.0


def test_loading_never_unpickles(tmp_path):
    marker = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self):
            return (Path.write_text, (marker, "code ran"))

    folder = tmp_path / "model"
    trained_encoder().save_pretrained(folder)
    for name in ("pytorch_model.bin", "model.pt"):
        (folder / name).write_bytes(pickle.dumps(Exploit()))
    TinyEncoder.from_pretrained(folder)  # loads from safetensors, ignores the pickles
    (folder / "model.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="no model.safetensors"):
        TinyEncoder.from_pretrained(folder)
    assert not marker.exists()


def test_bad_sources_give_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no config.json, model.safetensors"):
        TinyEncoder.from_pretrained(tmp_path)
    (tmp_path / "weights.txt").write_text("x")
    with pytest.raises(ValueError, match="expects a folder or a Hub repo id"):
        TinyEncoder.from_pretrained(tmp_path / "weights.txt")
    with pytest.raises(ValueError, match="is not a local folder nor a valid Hugging Face repo id"):
        TinyEncoder.from_pretrained(str(tmp_path / "missing" / "deeper" / "run"))
    folder = tmp_path / "wide"
    trained_encoder(width=4).save_pretrained(folder)
    with pytest.raises(ValueError, match="(?s)does not fit TinyEncoder.*size mismatch"):
        TinyEncoder.from_pretrained(folder, width=7)


class Words:
    """A word list object (not JSON), as a real vocabulary class would be."""

    def __init__(self, words: list[str]):
        self.items = list(words)


class Vocabulary(HubModel, tags=["word2vec"]):
    """An embedding table whose words are an __init__ argument kept in vocab.txt."""

    example_input = 'model.ids(["cat", "dog"])'
    file_args = ("words",)

    def __init__(self, vocab_size: int = 3, dim: int = 2, words: Words | None = None):
        super().__init__()
        self.table = nn.Embedding(vocab_size, dim)
        self.words = words.items if words is not None else []

    def ids(self, words: list[str]) -> torch.Tensor:
        return torch.tensor([self.words.index(w) for w in words])

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.table(ids)

    def _save_pretrained(self, save_directory: Path) -> None:
        super()._save_pretrained(save_directory)
        (save_directory / "vocab.txt").write_text("\n".join(self.words) + "\n")

    @classmethod
    def _from_folder(cls, folder: Path, **config) -> Vocabulary:
        words = Words((folder / "vocab.txt").read_text().splitlines())
        return cls(words=words, **config)


class Wrapper(HubModel):
    def __init__(self, inner: nn.Module | None = None, scale: float = 1.0):
        super().__init__()
        self.inner = inner if inner is not None else nn.Linear(2, 2)
        self.scale = scale


def test_non_json_init_argument_is_refused_at_save(tmp_path):
    with pytest.raises(TypeError, match="arguments inner that are not JSON-serialisable"):
        Wrapper(nn.Linear(2, 2), scale=2.0).save_pretrained(tmp_path)
    assert not (tmp_path / "model.safetensors").exists()
    Wrapper(scale=2.0).save_pretrained(tmp_path)  # JSON arguments only: fine
    assert Wrapper.from_pretrained(tmp_path).scale == 2.0


def test_subclass_saves_and_loads_extra_files(tmp_path):
    model = Vocabulary(vocab_size=3, dim=4, words=Words(["cat", "dog", "émeu"]))
    save_run(tmp_path, model, model_name="w2v", datasets=["text8"], metrics={"sim": 0.5})
    assert json.loads((tmp_path / "config.json").read_text()) == {"dim": 4, "vocab_size": 3}
    loaded = Vocabulary.from_pretrained(tmp_path)
    assert loaded.words == ["cat", "dog", "émeu"]
    ids = loaded.ids(["émeu", "cat"])
    assert torch.equal(loaded(ids), model(ids))
    namespace: dict = {}
    exec(usage_snippet(tmp_path), namespace)  # the card's snippet runs as written
    assert namespace["embeddings"].shape == (2, 4)


# -- model cards ----------------------------------------------------------------------------
def card_metadata(folder: Path) -> dict:
    text = (folder / "README.md").read_text()
    header = re.match(r"---\n(.*?)\n---\n", text, re.DOTALL)
    assert header, "card has no YAML header"
    return yaml.safe_load(header.group(1))


def usage_snippet(folder: Path) -> str:
    text = (folder / "README.md").read_text()
    code = re.search(r"## Usage\n\n```python\n(.*?)```", text, re.DOTALL).group(1)
    return code.replace("path/to/this/folder", str(folder))


def test_run_card_yaml_carries_metrics_tags_and_hyperparameters(tmp_path):
    folder = run_folder(tmp_path)
    meta = card_metadata(folder)
    assert meta["library_name"] == "multicon"
    assert meta["license"] == "apache-2.0"
    assert meta["datasets"] == ["cifar10"]
    assert meta["pipeline_tag"] == "image-feature-extraction"
    assert {"contrastive-learning", "simclr", "image"} <= set(meta["tags"])
    (entry,) = meta["model-index"]
    assert entry["name"] == "tiny-simclr"
    (result,) = entry["results"]
    assert result["dataset"] == {"name": "cifar10", "type": "cifar10", "split": "test"}
    assert {m["type"]: m["value"] for m in result["metrics"]} == {
        "knn_top1": 0.8125,
        "linear_top1": 0.75,
    }
    card = ModelCard.load(folder / "README.md")  # huggingface_hub parses it back too
    assert [r.metric_value for r in card.data.eval_results] == [0.8125, 0.75]
    text = card.text
    assert "| feature-extraction | cifar10 | test | knn_top1 | 0.8125 |" in text
    assert "| `lr` | `0.3` |" in text and "| `batch_size` | `256` |" in text
    assert "hub_token" not in text and TOKEN not in card.content


def test_card_usage_snippet_loads_the_model_and_embeds_an_input(tmp_path):
    folder = run_folder(tmp_path)
    namespace: dict = {}
    exec(usage_snippet(folder), namespace)
    reference = TinyEncoder.from_pretrained(folder)
    assert torch.equal(namespace["embeddings"], reference(namespace["inputs"]))


def test_card_rejects_metrics_without_a_dataset(tmp_path):
    with pytest.raises(ValueError, match="need datasets="):
        write_model_card(tmp_path, model_name="x", usage="pass", metrics={"knn_top1": 0.5})
    with pytest.raises(TypeError, match="metric 'knn_top1' must be a number"):
        write_model_card(
            tmp_path, model_name="x", usage="pass", datasets=["d"], metrics={"knn_top1": "high"}
        )


# -- push -----------------------------------------------------------------------------------
def test_push_folder_commits_exactly_the_run_files(hub, tmp_path):
    folder = run_folder(tmp_path)
    info = push_folder(folder, "fake-user/tiny-simclr", token=TOKEN, private=True)
    assert info.commit_url.startswith("https://huggingface.co/fake-user/tiny-simclr/commit/")
    assert hub.requests == [
        ("POST", "https://huggingface.co/api/repos/create"),
        ("POST", "https://huggingface.co/api/validate-yaml"),  # upload_folder checks the card
        ("POST", "https://huggingface.co/api/validate-yaml"),  # ... and create_commit again
        ("POST", "https://huggingface.co/api/models/fake-user/tiny-simclr/preupload/main"),
        ("POST", "https://huggingface.co/fake-user/tiny-simclr.git/info/lfs/objects/batch"),
        ("PUT", next(url for method, url in hub.requests if method == "PUT")),
        ("POST", "https://huggingface.co/api/models/fake-user/tiny-simclr/commit/main"),
    ]
    assert list(hub.repos) == ["fake-user/tiny-simclr"]
    assert hub.repos["fake-user/tiny-simclr"]["visibility"] == "private"
    assert hub.validated_cards == [(folder / "README.md").read_text()] * 2
    (commit,) = hub.commits
    expected = {n: (folder / n).read_bytes() for n in ("README.md", "config.json")}
    expected["model.safetensors"] = (folder / "model.safetensors").read_bytes()
    assert commit["files"] == expected  # no checkpoints/, no .bin, byte-identical
    assert list(hub.lfs_objects.values()) == [expected["model.safetensors"]]


def test_model_push_to_hub_commits_weights_config_and_card(hub, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", TOKEN)  # the logged-in token is found without token=
    model = trained_encoder(width=3)
    url = model.push_to_hub(
        "tiny-moco",
        model_card_kwargs={"method_tags": ["moco"], "datasets": ["stl10"], "metrics": {"knn": 1}},
    )
    assert url.startswith("https://huggingface.co/fake-user/tiny-moco/commit/")
    (commit,) = hub.commits
    assert sorted(commit["files"]) == ["README.md", "config.json", "model.safetensors"]
    pushed = safetensors.torch.load(commit["files"]["model.safetensors"])
    assert pushed.keys() == model.state_dict().keys() - {"tied_again.weight"}  # stored once
    assert all(torch.equal(t, model.state_dict()[name]) for name, t in pushed.items())
    assert json.loads(commit["files"]["config.json"]) == {"dropout": 0.5, "out_dim": 3, "width": 3}
    card = commit["files"]["README.md"].decode()
    assert 'TinyEncoder.from_pretrained("tiny-moco")' in card
    assert "moco" in yaml.safe_load(card.split("---")[1])["tags"]


def test_from_pretrained_downloads_a_pushed_repo(hub, tmp_path):
    model = trained_encoder(width=4)
    model.push_to_hub("fake-user/tiny-dl", token=TOKEN)
    hub.requests.clear()
    cache = tmp_path / "cache"
    loaded = TinyEncoder.from_pretrained("fake-user/tiny-dl", token=TOKEN, cache_dir=cache)
    x = torch.rand(3, 3, 8, 8)
    assert torch.equal(model(x), loaded(x))
    downloaded = {url.rsplit("/", 1)[-1] for method, url in hub.requests if method == "GET"}
    assert {"config.json", "model.safetensors"} <= downloaded
    hub.requests.clear()
    offline = TinyEncoder.from_pretrained(
        "fake-user/tiny-dl", cache_dir=cache, local_files_only=True
    )  # from the cache, no request
    assert torch.equal(model(x), offline(x)) and hub.requests == []


def test_word2vec_push_carries_vectors_for_gensim_and_download_skips_them(hub, tmp_path):
    from multicon.text import load_word2vec_format

    model, _ = word2vec()
    model.push_to_hub("fake-user/w2v", token=TOKEN)
    (commit,) = hub.commits
    assert sorted(commit["files"]) == [
        "README.md",
        "config.json",
        "model.safetensors",
        "vectors.bin",
        "vocab.txt",
    ]
    (tmp_path / "vectors.bin").write_bytes(commit["files"]["vectors.bin"])
    words, vectors = load_word2vec_format(tmp_path / "vectors.bin", binary=True)
    assert words == ["the", "cat", "sat"] and torch.equal(vectors, model.vectors)
    gensim = pytest.importorskip("gensim")
    kv = gensim.models.KeyedVectors.load_word2vec_format(tmp_path / "vectors.bin", binary=True)
    assert kv.index_to_key == words and torch.equal(torch.from_numpy(kv.vectors), model.vectors)
    hub.requests.clear()
    loaded = type(model).from_pretrained("fake-user/w2v", token=TOKEN, cache_dir=tmp_path / "c")
    assert torch.equal(loaded.vectors, model.vectors)
    fetched = {url.rsplit("/", 1)[-1] for method, url in hub.requests if method == "GET"}
    assert "vocab.txt" in fetched and "vectors.bin" not in fetched  # safetensors is enough


def test_push_to_hub_tool_uploads_a_run_folder(hub, tmp_path, monkeypatch, capsys):
    folder = run_folder(tmp_path)
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    assert push_tool["main"]([str(folder), "fake-user/from-tool", "--private"]) == 0
    assert capsys.readouterr().out.startswith("https://huggingface.co/fake-user/from-tool/commit/")
    assert sorted(hub.commits[0]["files"]) == ["README.md", "config.json", "model.safetensors"]
    assert push_tool["main"]([str(tmp_path / "nope"), "fake-user/from-tool"]) == 2
    assert "no run folder" in capsys.readouterr().err


def test_token_never_logged_or_written(hub, tmp_path, caplog, capsys, monkeypatch):
    monkeypatch.setattr(constants, "HF_DEBUG", True)  # huggingface_hub logs every request
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="huggingface_hub")
    folder = run_folder(tmp_path)
    maybe_push(folder, "fake-user/tiny", token=TOKEN)
    assert any(h.get("authorization") == f"Bearer {TOKEN}" for h in hub.headers_seen)
    logged = {r.name for r in caplog.records}
    assert "huggingface_hub.utils._http" in logged  # the requests were logged ...
    assert "authorization: <token>" in caplog.text.lower()  # headers too, redacted
    assert TOKEN not in caplog.text
    out = capsys.readouterr()
    assert TOKEN not in out.out + out.err
    for name, data in hub.commits[0]["files"].items():
        assert TOKEN.encode() not in data, name


def test_token_redacted_from_server_errors(hub, tmp_path):
    hub.fail_commit_with_echo = True  # a proxy that echoes the Authorization header back
    with pytest.raises(RuntimeError, match="proxy error for Bearer <token>") as caught:
        push_folder(run_folder(tmp_path), "fake-user/tiny", token=TOKEN)
    assert TOKEN not in "".join(traceback.format_exception(caught.value))
    with pytest.raises(RuntimeError) as caught:
        trained_encoder().push_to_hub("fake-user/tiny2", token=TOKEN)
    assert TOKEN not in "".join(traceback.format_exception(caught.value))


def test_missing_token_fails_before_any_request(hub, tmp_path):
    folder = run_folder(tmp_path)
    with pytest.raises(ValueError, match="no Hugging Face token.*nothing was uploaded"):
        push_folder(folder, "fake-user/tiny")
    with pytest.raises(ValueError, match="no Hugging Face token"):
        trained_encoder().push_to_hub("fake-user/tiny")
    assert hub.requests == [] and hub.telemetry == []


@pytest.mark.parametrize("repo_id", ["user/my model", "a/b/c", "user/name--x", "", "-bad"])
def test_invalid_repo_id_fails_before_any_request(hub, tmp_path, repo_id):
    folder = run_folder(tmp_path)
    with pytest.raises(ValueError, match="is not a valid Hugging Face repo id"):
        push_folder(folder, repo_id, token=TOKEN)
    with pytest.raises(ValueError, match="repo id"):
        trained_encoder().push_to_hub(repo_id, token=TOKEN)
    assert hub.requests == [] and hub.telemetry == []


def test_push_refuses_unfinished_run_folder(hub, tmp_path):
    trained_encoder().save_pretrained(tmp_path)
    (tmp_path / "README.md").unlink()
    with pytest.raises(FileNotFoundError, match="no README.md"):
        push_folder(tmp_path, "fake-user/tiny", token=TOKEN)
    with pytest.raises(FileNotFoundError, match="no run folder"):
        push_folder(tmp_path / "missing", "fake-user/tiny", token=TOKEN)
    assert hub.requests == [] and hub.telemetry == []


# -- the real model kinds -------------------------------------------------------------------
def small_conv_encoder() -> tuple[HubModel, torch.Tensor]:
    from multicon.encoders.small_cnn import SmallConvEncoder

    model = SmallConvEncoder(in_channels=1, width=4, proj_dim=8, proj_hidden_dim=16)
    model.train()
    for _ in range(2):  # move BatchNorm running statistics off their defaults
        model(torch.rand(6, 1, 8, 8))
    return model.eval(), torch.rand(3, 1, 8, 8)


def word2vec() -> tuple[HubModel, torch.Tensor]:
    from multicon.text import Vocabulary, Word2Vec

    model = Word2Vec.from_vocab(Vocabulary(["the", "cat", "sat"], [3, 2, 1]), dim=4)
    with torch.no_grad():
        model.output_embeddings.weight.normal_()  # off its zero init, so loading is checked
    return model.eval(), torch.tensor([2, 0])


def image_encoder() -> tuple[HubModel, torch.Tensor]:
    from multicon.encoders import ImageEncoder

    model = ImageEncoder(  # MoCo v3 shape (3-layer head, last BN), channels-last
        "resnet18",
        head_hidden_dim=16,
        out_dim=8,
        head_layers=3,
        head_last_batch_norm=True,
        channels_last=True,
    )
    model.train()
    model(torch.rand(4, 3, 16, 16))
    return model.eval(), torch.rand(2, 3, 16, 16)


def dual_encoder() -> tuple[HubModel, Callable[[HubModel], torch.Tensor]]:
    from multicon.encoders.dual import DualEncoder
    from multicon.encoders.tokenization import train_sentencepiece_tokenizer

    tokenizer = train_sentencepiece_tokenizer(["a red square", "a blue circle"] * 10, vocab_size=30)
    bert = {
        "model_type": "bert",
        "vocab_size": len(tokenizer),
        "hidden_size": 16,
        "num_hidden_layers": 1,
        "num_attention_heads": 2,
        "intermediate_size": 32,
    }
    model = DualEncoder(
        {"kind": "resnet", "arch": "resnet18"}, {"config": bert}, embed_dim=8, image_size=32
    )
    model.tokenizer = tokenizer
    model.train()
    model(torch.rand(4, 3, 32, 32))  # move BatchNorm running statistics off their defaults
    images, texts = torch.rand(3, 3, 32, 32), ["a red circle", "a blue square"]

    def both_towers(m: DualEncoder) -> torch.Tensor:  # texts use m's own (reloaded) tokenizer
        return torch.cat([m.encode_image(images), m.encode_text(texts)])

    return model.eval(), both_towers


# Every HubModel subclass in multicon: a builder giving the model and what to compare after the
# round trip (an input for model(input), or a function model -> tensor).
REAL_MODELS = {
    "SmallConvEncoder": small_conv_encoder,
    "ImageEncoder": image_encoder,
    "Word2Vec": word2vec,
    "DualEncoder": dual_encoder,
}


# Packages some multicon modules need but a user may lack (CPU-only torch builds have no triton;
# pyproject's pytest options leave multicon/text/sgns_triton.py out of the doctests for it).
OPTIONAL_PACKAGES = {"triton"}


def multicon_model_classes() -> set[type]:
    """Every class in multicon that saves with huggingface_hub's mixin."""
    import importlib
    import pkgutil

    import multicon

    for info in pkgutil.walk_packages(multicon.__path__, "multicon."):
        try:
            importlib.import_module(info.name)
        except ModuleNotFoundError as error:  # skipped, as the doctest collection skips them
            if (error.name or "").partition(".")[0] not in OPTIONAL_PACKAGES:
                raise
    found, todo = set(), [ModelHubMixin]
    while todo:
        for sub in todo.pop().__subclasses__():
            todo.append(sub)
            if sub.__module__.startswith("multicon.") and sub is not HubModel:
                found.add(sub)
    return found


def test_every_multicon_model_is_a_hub_model():
    others = sorted(c.__name__ for c in multicon_model_classes() if not issubclass(c, HubModel))
    assert not others, f"{others} should subclass multicon.hub.HubModel (safetensors-only, strict)"


def test_every_multicon_hub_model_has_a_round_trip_test():
    missing = {c.__name__ for c in multicon_model_classes()} - REAL_MODELS.keys()
    assert not missing, f"add {sorted(missing)} to REAL_MODELS in tests/test_hub.py"


def test_model_discovery_skips_modules_of_missing_optional_packages():
    """CPU-only torch builds have no triton: the scan skips the modules that need it."""
    script = (
        "import sys\n"
        "sys.modules['triton'] = None  # as on a machine without triton: importing it fails\n"
        "import test_hub\n"
        "print(sorted(c.__name__ for c in test_hub.multicon_model_classes()))\n"
    )
    tests = Path(__file__).parent
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tests.parent), str(tests)])}
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, cwd=tests, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == str(sorted(REAL_MODELS))


def outputs(model: HubModel, probe) -> torch.Tensor:
    """``probe(model)`` for a model without a plain forward (two towers), else ``model(probe)``."""
    with torch.no_grad():
        return probe(model) if callable(probe) else model(probe)


@pytest.mark.parametrize("kind", sorted(REAL_MODELS))
def test_real_model_round_trip_and_card(kind, tmp_path):
    model, probe = REAL_MODELS[kind]()
    save_run(tmp_path, model, model_name=kind, datasets=["d"], metrics={"knn_top1": 0.5})
    loaded = type(model).from_pretrained(tmp_path)
    assert torch.equal(outputs(model, probe), outputs(loaded, probe))
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, loaded.state_dict()[name]), name
    meta = card_metadata(tmp_path)
    assert meta["library_name"] == "multicon"
    assert meta["model-index"][0]["results"][0]["metrics"] == [{"type": "knn_top1", "value": 0.5}]
    namespace: dict = {}
    exec(usage_snippet(tmp_path), namespace)  # the card's snippet loads it and embeds an input
    embedded = [v for k, v in namespace.items() if "embed" in k and isinstance(v, torch.Tensor)]
    assert embedded and all(e.dim() >= 1 and e.numel() > 0 for e in embedded)


def test_demo_recipe_saves_a_card_and_pushes(hub, tmp_path, monkeypatch):
    recipe = runpy.run_path(str(Path(__file__).parents[1] / "recipes" / "demo_digits.py"))
    argv = ["--output_dir", str(tmp_path), "--max_steps", "2", "--batch_size", "32"]
    argv += ["--eval_every", "0", "--log_with", "", "--width", "4", "--proj_dim", "8"]
    with pytest.raises(ValueError, match="no Hugging Face token"):  # before any training
        recipe["main"]([*argv, "--push_to_hub", "fake-user/digits"])
    assert not (tmp_path / "model").exists()
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    summary = recipe["main"]([*argv, "--push_to_hub", "fake-user/digits", "--hub_private"])
    assert summary["hub_commit"].startswith("https://huggingface.co/fake-user/digits/commit/")
    (commit,) = hub.commits
    folder = tmp_path / "model"
    assert commit["files"] == {p.name: p.read_bytes() for p in folder.iterdir()}
    (metric,) = card_metadata(folder)["model-index"][0]["results"][0]["metrics"]
    assert metric["type"] == "knn_top1"
    assert metric["value"] == pytest.approx(summary["knn_top1_trained"], abs=1e-4)
    card = (folder / "README.md").read_text()
    assert "| `max_steps` | `2` |" in card and TOKEN not in card
    assert 'SmallConvEncoder.from_pretrained("fake-user/digits")' in card


def test_hub_args_check_the_repo_id_when_parsed(no_token):
    with pytest.raises(ValueError, match="'me/two words' is not a valid Hugging Face repo id"):
        HubArgs(push_to_hub="me/two words")
    with pytest.raises(ValueError, match="no Hugging Face token"):
        HubArgs(push_to_hub="me/model")
    assert HubArgs().push("anywhere") is None


class PlainMixinModel(nn.Module, PyTorchModelHubMixin):
    def __init__(self, dim: int = 2):
        super().__init__()
        self.linear = nn.Linear(dim, dim)


def test_save_run_takes_a_plain_mixin_model_too(tmp_path):
    save_run(tmp_path, PlainMixinModel(dim=3), model_name="plain", license="mit")
    assert card_metadata(tmp_path)["license"] == "mit"
    namespace: dict = {}
    exec(usage_snippet(tmp_path), namespace)
    assert namespace["model"].linear.in_features == 3
    with pytest.raises(TypeError, match="subclass multicon.hub.HubModel"):
        save_run(tmp_path, nn.Linear(2, 2), model_name="x")


def test_docs_hub_page_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the page writes runs/hub-doc/...
    run_doc = runpy.run_path(str(Path(__file__).parents[1] / "tools" / "run_doc.py"))
    namespace = run_doc["run"](Path(__file__).parents[1] / "docs" / "hub.md")
    assert namespace["again"].words == ["king", "queen", "man"]
    assert (tmp_path / "runs" / "hub-doc" / "model" / "README.md").is_file()
