"""tools/bench_word2vec.py runs gensim and multicon on one corpus and reports every round."""

import json
import mmap
import subprocess
import time

import numpy as np
import pytest
from test_custom_generator import ROOT, load_tool
from test_word2vec_learning import _write_corpus


def test_bench_reports_rounds_and_ratios(tmp_path):
    corpus = tmp_path / "topics.txt"
    _write_corpus(corpus, sentences=300)
    (tmp_path / "q.txt").write_text(": topics\ntopic0word0 topic0word1 topic1word0 topic1word1\n")
    (tmp_path / "ws.tsv").write_text("topic0word0\ttopic0word1\t9\ntopic0word0\ttopic5word1\t1\n")
    (tmp_path / "sl.txt").write_text("topic2word0\ttopic2word3\t8\ntopic2word0\ttopic9word1\t2\n")
    out = tmp_path / "bench.json"
    bench = load_tool("bench_word2vec")
    report = bench.main(
        [
            *("--corpus", str(corpus), "--tokenizer", "lowercase", "--min_count", "1"),
            *("--dim", "16", "--sample", "0"),
            *("--analogies", str(tmp_path / "q.txt"), "--wordsim", str(tmp_path / "ws.tsv")),
            *("--simlex", str(tmp_path / "sl.txt"), "--restrict_vocab", "200"),
            *("--batch_size", "256", "--epochs", "1", "--overhead_steps", "0", "--repeats", "2"),
            *("--out", str(out)),
        ]
    )
    assert json.loads(out.read_text()) == report
    head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True)
    if head.returncode == 0:  # a git checkout: the record names the commit it ran from
        assert report["code"]["commit"] == head.stdout.decode().strip()
        assert isinstance(report["code"]["dirty"], bool)
    rounds = report["repeats"]
    assert len(rounds["gensim_words_per_second"]) == len(rounds["multicon_words_per_second"]) == 2
    assert all(w > 0 for w in rounds["multicon_words_per_second"])
    assert len(rounds["ratios"]) == 2 and rounds["ratios"] == sorted(rounds["ratios"])
    assert rounds["median_ratio"] in rounds["ratios"]
    for side in ("gensim", "multicon"):
        assert report[side]["vocab_size"] == 104  # 20 topics x 5 words + 4 function words
        assert report[side]["analogy_answered"] == 1
        # measured in a process of its own: more than torch's import alone, less than 4 GiB
        assert 100 < report[side]["peak_rss_mb"] < 4096
        # its anonymous part, sampled: most of the peak, never more than all of it
        assert 50 < report[side]["peak_rss_anon_mb"] <= report[side]["peak_rss_mb"] + 1
        assert report[side]["memory_trace"][0][0] == 0


def test_pair_bench_times_both_pair_paths_at_each_width(tmp_path, capsys):
    from multicon.pairs import context

    corpus = tmp_path / "topics.txt"
    _write_corpus(corpus, sentences=300)
    argv = ["--corpus", str(corpus), "--sample", "0", "--batch_size", "64", "--repeats", "2"]
    report = load_tool("bench_pairs").main([*argv, "--shuffle_blocks", "1,2"])
    assert json.loads(capsys.readouterr().out) == report
    runs = report["seconds_per_epoch"]
    assert sorted(runs) == [f"{p}_blocks{w}" for p in ("c_loop", "tensor_ops") for w in (1, 2)]
    assert all(len(times) == 2 and min(times) > 0 for times in runs.values())
    assert report["pairs_per_epoch"] > 1000
    assert context._native_pairs() is not None  # the bench put the C loop back
    for bad in ("4,x", "0,16"):
        with pytest.raises(SystemExit):
            load_tool("bench_pairs").main([*argv, "--shuffle_blocks", bad])
        assert "argument --shuffle_blocks" in capsys.readouterr().err


def test_memory_sampler_tells_anonymous_from_file_backed_memory(tmp_path):
    from multicon.bench.word2vec import MemorySampler as sampler

    if sampler.read() is None:
        pytest.skip("/proc/self/status has no RssAnon here")
    path = tmp_path / "pages.bin"
    path.write_bytes(b"\1" * (64 << 20))
    base_anon, base_file = sampler.read()

    def hold_until(seen):  # give the sampler's thread up to 5 s to look, on a busy machine
        for _ in range(500):
            if seen():
                return
            time.sleep(0.01)

    with sampler(every=0.01) as mapped:  # 64 MiB of a mapped file, every page touched
        with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as pages:
            view = np.frombuffer(pages, np.uint8)
            assert int(view[::4096].sum()) == 64 << 8
            hold_until(lambda: (mapped.peak_file or 0) >= base_file + 60)
            del view
    # Fresh private pages: a malloc'd block could reuse heap pages earlier tests left resident.
    fresh = mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS
    with sampler(every=0.01) as held, mmap.mmap(-1, 64 << 20, flags=fresh) as pages:
        view = np.frombuffer(pages, np.uint8)
        view[:] = 1  # 64 MiB of written anonymous memory
        hold_until(lambda: (held.peak_anon or 0) >= base_anon + 60)
        del view
    assert mapped.peak_file >= base_file + 60 and mapped.peak_anon < base_anon + 30
    assert held.peak_anon >= base_anon + 60


def test_code_version_names_the_commit_and_a_dirty_tree(tmp_path):
    code_version = load_tool("bench_word2vec").code_version
    assert code_version(tmp_path) == {"commit": None, "dirty": None}  # not a git checkout

    def git(*args):
        return subprocess.run(
            ["git", "-C", str(tmp_path), *args], check=True, capture_output=True, text=True
        ).stdout.strip()

    git("init", "-q")
    (tmp_path / "a.py").write_text("x = 1\n")
    git("add", "a.py")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "a")
    (tmp_path / "untracked.json").write_text("{}")  # a run's output is not a code change
    assert code_version(tmp_path) == {"commit": git("rev-parse", "HEAD"), "dirty": False}
    (tmp_path / "a.py").write_text("x = 2\n")
    assert code_version(tmp_path) == {"commit": git("rev-parse", "HEAD"), "dirty": True}


def test_gpu_concurrency_simulation_reports_both_ways_of_writing(tmp_path):
    corpus = tmp_path / "topics.txt"
    _write_corpus(corpus, sentences=300)
    (tmp_path / "q.txt").write_text(": topics\ntopic0word0 topic0word1 topic1word0 topic1word1\n")
    (tmp_path / "ws.tsv").write_text("topic0word0\ttopic0word1\t9\ntopic0word0\ttopic5word1\t1\n")
    sim = load_tool("simulate_gpu_sgns")
    files = ("--analogies", str(tmp_path / "q.txt"), "--wordsim", str(tmp_path / "ws.tsv"))
    for write in ("add", "store"):
        report = sim.main(
            [
                *("--corpus", str(corpus), "--epochs", "1", "--batch_size", "512"),
                *("--pairs_per_program", "8", "--write", write, *files),
                *("--simlex", str(tmp_path / "ws.tsv")),
            ]
        )
        assert report["programs"] == 64 and f"--write {write}" in report["command"]
        assert {"analogy", "ws353", "simlex999"} <= set(report)
