"""The word2vec recipe end to end on a small corpus file it reads from disk."""

import importlib.util
import json
import os
import random
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch
from test_cli import HUGE_PAGES_CHECK

from multicon.text import Word2Vec, load_word2vec_format

ROOT = Path(__file__).resolve().parents[1]


def _recipe():
    return importlib.import_module("multicon.recipes.word2vec")


def test_recipe_trains_scores_and_saves(tmp_path):
    rng = random.Random(1)
    lines = []
    for _ in range(600):
        t = rng.randrange(8)
        lines.append(" ".join(f"t{t}w{rng.randrange(4)}" for _ in range(10)))
    (tmp_path / "corpus.txt").write_text("\n".join(lines) + "\n")
    # t0w0 : t0w1 = t1w0 : t1w1 is not a real analogy; the file just has to be scored
    (tmp_path / "q.txt").write_text(": toy\nt0w0 t0w1 t1w0 t1w1\nt0w0 t0w1 unknown t1w1\n")
    (tmp_path / "ws.tsv").write_text("t0w0\tt0w1\t9\nt0w0\tt5w1\t1\nt2w2\tt2w3\t8\nt2w2\tt6w0\t2\n")
    out = tmp_path / "run"
    report = _recipe().main(
        [
            *("--corpus", str(tmp_path / "corpus.txt"), "--min_count", "1"),
            *("--dim", "16", "--window", "3", "--sample", "0", "--shared_negatives", "16"),
            *("--epochs", "2", "--batch_size", "512", "--output_dir", str(out)),
            *("--analogies", str(tmp_path / "q.txt"), "--wordsim", str(tmp_path / "ws.tsv")),
            *("--simlex", "", "--log_with", "", "--progress_bar", "0"),
        ]
    )
    assert report["kernel"] == "fused"  # --kernel auto on a CPU with a C compiler
    assert report["vocab_size"] == 32 and report["analogy_oov"] == 1
    assert set(report["analogy_sections"]) == {"toy"}
    assert report["ws353"] > 0.5  # topic mates are more similar than strangers
    assert "simlex999" not in report  # --simlex '': that evaluation is off
    assert json.loads((out / "report.json").read_text())["steps"] == report["steps"]
    assert "word2vec" in (out / "model" / "README.md").read_text()  # the model card
    assert report["hub_commit"] is None  # no --push_to_hub
    model = Word2Vec.from_pretrained(out / "model")
    words, vectors = load_word2vec_format(out / "model" / "vectors.bin", binary=True)
    assert words == model.vocab.words and vectors.shape == (32, 16)
    gensim_models = pytest.importorskip("gensim.models")  # the Hub folder loads in gensim too
    kv = gensim_models.KeyedVectors.load_word2vec_format(
        str(out / "model" / "vectors.bin"), binary=True
    )
    assert list(kv.index_to_key) == model.vocab.words
    assert torch.allclose(torch.from_numpy(kv.vectors), model.vectors)


def test_shuffle_blocks_reaches_the_pairs_and_a_bad_value_names_the_flag(tmp_path, monkeypatch):
    recipe = _recipe()
    (tmp_path / "corpus.txt").write_text("a b c d e f\n" * 50)
    args = [*("--corpus", str(tmp_path / "corpus.txt"), "--min_count", "1", "--sample", "0")]
    args += [*("--analogies", "", "--wordsim", "", "--simlex", "", "--log_with", "")]
    args += [*("--epochs", "1", "--progress_bar", "0", "--output_dir", str(tmp_path / "run"))]
    with pytest.raises(ValueError, match="--shuffle_blocks must be >= 1, got 0"):
        recipe.main([*args, "--shuffle_blocks", "0"])
    made = []
    real = recipe.ContextPairs

    def recording(*a, **kw):
        made.append(kw)
        return real(*a, **kw)

    monkeypatch.setattr(recipe, "ContextPairs", recording)
    recipe.main([*args, "--shuffle_blocks", "3"])  # not a default of the recipe or the class
    assert [kw["shuffle_blocks"] for kw in made] == [3]


def test_recipe_streams_a_local_dataset_file_into_its_token_cache(tmp_path):
    rng = random.Random(1)
    words = [[f"t{rng.randrange(8)}w{i % 4}" for i in range(10)] for _ in range(300)]
    rows = [{"body": " ".join(sentence)} for sentence in words]
    (tmp_path / "corpus.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    flags = [
        *("--corpus", str(tmp_path / "corpus.jsonl"), "--text_column", "body"),
        *("--min_count", "1", "--dim", "8", "--sample", "0", "--epochs", "1"),
        *("--batch_size", "512", "--analogies", "", "--wordsim", "", "--simlex", ""),
        *("--log_with", "", "--progress_bar", "0", "--token_cache", str(tmp_path / "cache")),
    ]
    report = _recipe().main([*flags, "--output_dir", str(tmp_path / "run")])
    assert report["vocab_size"] == 32 and report["corpus_words"] == 3000
    meta = json.loads((tmp_path / "cache" / "meta.json").read_text())
    assert meta["key"]["corpus"]["column"] == "body" and meta["tokens"] == 3000
    # the same file read with another tokenizer: its cache is refused, naming the file and why
    again = [*flags, "--tokenizer", "whitespace", "--output_dir", str(tmp_path / "2")]
    refused = "cache/meta.json: .*another corpus, tokenizer.*tokenizer: cache has 'lowercase'"
    with pytest.raises(ValueError, match=refused + ", asked 'whitespace'"):
        _recipe().main(again)
    other = [*flags[:2], "--text_column", "title", *flags[4:], "--output_dir", str(tmp_path / "3")]
    with pytest.raises(ValueError, match="no column 'title'"):
        _recipe().main(other)


def test_recipe_asks_for_huge_pages_before_torch_allocates():
    """The recipe sets THP_MEM_ALLOC_ENABLE ahead of torch's first allocation (it is read once
    then): a large tensor made after importing the recipe is madvised into huge pages (the
    ``hg`` flag of its mapping), whatever the system's default."""
    code = f"""
import importlib.util, sys
spec = importlib.util.spec_from_file_location("r", {str(ROOT / "recipes/word2vec_text8.py")!r})
spec.loader.exec_module(sys.modules.setdefault("r", importlib.util.module_from_spec(spec)))
"""
    code += HUGE_PAGES_CHECK
    if not Path("/proc/self/smaps").exists():
        pytest.skip("needs Linux /proc/self/smaps")
    env = {k: v for k, v in os.environ.items() if k != "THP_MEM_ALLOC_ENABLE"}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["True"]


def _small_run(tmp_path, *extra, sentences=400):
    """The recipe on a made-up corpus of ``sentences`` lines, 1 epoch, no evaluation files;
    returns the report and every warning's message."""
    rng = random.Random(3)
    lines = [" ".join(f"t{t % 8}w{rng.randrange(4)}" for _ in range(10)) for t in range(sentences)]
    (tmp_path / "corpus.txt").write_text("\n".join(lines) + "\n")
    argv = [
        *("--corpus", str(tmp_path / "corpus.txt"), "--min_count", "1", "--dim", "8"),
        *("--epochs", "1", "--batch_size", "256", "--output_dir", str(tmp_path / "run")),
        *("--log_with", "", "--progress_bar", "0", "--analogies", "", "--wordsim", ""),
        *("--simlex", "", "--sample", "0", *extra),
    ]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        report = _recipe().main(argv)
    return report, [str(w.message) for w in caught]


@pytest.mark.parametrize("row_clip", ["0", "1"])
def test_recipe_warns_about_large_batches_without_row_clip(tmp_path, row_clip):
    report, said = _small_run(
        tmp_path,
        *("--batch_size", "65536", "--row_clip", row_clip),
        *("--kernel", "torch"),  # the fused kernel applies pairs one at a time: no such risk
        sentences=4000,
    )
    assert report["steps"] >= 1
    said = [m for m in said if "--row_clip 1" in m]
    assert len(said) == (row_clip == "0"), said


@pytest.mark.parametrize("kernel", ["auto", "torch"])
def test_recipe_says_when_shared_noise_settings_go_unused(tmp_path, kernel):
    report, said = _small_run(tmp_path, "--shared_negatives", "32", "--kernel", kernel)
    unused = [m for m in said if "apply to the torch kernel" in m]
    if kernel == "auto":
        assert report["kernel"] == "fused" and len(unused) == 1, said
        assert "--shared_negatives 32" in unused[0]
    else:
        assert report["kernel"] == "torch" and not unused, said


def test_recipe_without_a_compiler_falls_back_to_the_torch_kernel(tmp_path, monkeypatch):
    from multicon import native

    monkeypatch.setenv("CC", "no-such-compiler-here")
    monkeypatch.setenv("MULTICON_CACHE", str(tmp_path / "cache"))
    native.load.cache_clear()
    try:
        report, said = _small_run(tmp_path)
    finally:
        native.load.cache_clear()
    assert report["kernel"] == "torch" and report["steps"] >= 1
    assert any("'no-such-compiler-here' was not found" in m and "torch kernel" in m for m in said)
