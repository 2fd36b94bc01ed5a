import os
import tempfile

import pytest
import torch
from hub_fake import TOKEN, FakeHub
from huggingface_hub import constants

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture(autouse=True)
def _tempfile_under_pytest(tmp_path_factory, monkeypatch):
    """The docs pages the tests run write with `tempfile.mkdtemp()`, as a reader's script would,
    and nothing removes those folders: one caption page leaves 350 MB of checkpoints a run.
    Under pytest's own temporary folder they go with the runs pytest prunes (it keeps three)."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path_factory.mktemp("tempfile")))


@pytest.fixture(autouse=True)
def _token_cache_under_pytest(tmp_path_factory, monkeypatch):
    """The word2vec recipe caches a corpus's token ids under $MULTICON_CACHE (by default
    ~/.cache/multicon); under pytest they go with its temporary folders."""
    monkeypatch.setenv("MULTICON_CACHE", str(tmp_path_factory.mktemp("multicon_cache")))


@pytest.fixture(autouse=True)
def _fresh_accelerator_state():
    """Accelerate keeps one global state per process; tests build trainers with different
    precisions, so each test starts from a clean one (a real run has one trainer per process)."""
    yield
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state(reset_partial_state=True)


@pytest.fixture(scope="session")
def topic_corpus(tmp_path_factory):
    """(vocabulary, encoded corpus) of the planted-topics corpus of test_word2vec_learning."""
    from test_word2vec_learning import _write_corpus

    from multicon.data.corpus import TextCorpus, encode_corpus
    from multicon.text import Vocabulary

    path = tmp_path_factory.mktemp("corpus") / "topics.txt"
    _write_corpus(path)
    text = TextCorpus.from_file(path)
    vocab = Vocabulary.build(text, min_count=1)
    return vocab, encode_corpus(text, vocab)


@pytest.fixture
def no_token(monkeypatch, tmp_path):
    """No HF_TOKEN in the environment and no stored login."""
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.delenv("HUGGING_FACE_HUB_TOKEN", raising=False)
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "no-token"))
    monkeypatch.setattr(constants, "HF_STORED_TOKENS_PATH", str(tmp_path / "no-tokens"))


@pytest.fixture
def hub(monkeypatch, no_token):
    """The fake Hub (tests/hub_fake.py) behind huggingface_hub's client; online mode, no Xet
    (the plain LFS path), no login."""
    monkeypatch.setenv("HF_HUB_DISABLE_XET", "1")
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", True)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    fake = FakeHub(token=TOKEN)
    fake.install()
    yield fake
    FakeHub.uninstall()


@pytest.fixture
def one_thread():
    """Intra-op threads thrash on a loaded 2-core machine; one thread is ~50x faster here."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
