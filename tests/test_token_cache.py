"""The token cache: a corpus's ids in memory-mapped files, built once, reused, refused when it
belongs to another corpus; and the pairs read from it block by block equal the in-memory ones."""

import gzip

import numpy as np
import pytest
import torch

from multicon.data.corpus import EncodedCorpus, TextCorpus, encode_corpus, whitespace_words
from multicon.data.token_cache import (
    MappedArray,
    cached_encoding,
    dataset_identity,
    file_identity,
    key_folder,
)
from multicon.pairs.context import ContextPairs
from multicon.text import Vocabulary


def _write_lines(path, sentences=400, seed=0):
    """Sentences of 1-30 words from a Zipf-like vocabulary of 300 words (some stay rare)."""
    rng = np.random.default_rng(seed)
    words = [f"w{i}" for i in range(300)]
    p = 1.0 / np.arange(1, 301)
    p /= p.sum()
    lines = [" ".join(rng.choice(words, size=rng.integers(1, 31), p=p)) for _ in range(sentences)]
    text = "\n".join(lines) + "\n"
    if path.suffix == ".gz":
        with gzip.open(path, "wt") as f:
            f.write(text)
    else:
        path.write_text(text)
    return path


def _key(path, **extra):
    return {"corpus": file_identity(path), "tokenizer": "whitespace", "min_count": 2, **extra}


class _OldContextPairs(ContextPairs):
    """The pair generator before the token cache (main at b69bfd5), verbatim: it holds the whole
    corpus and every per-token draw in memory. The reference the block-wise reader must equal."""

    def num_pairs(self) -> int:
        if self._expected is None:
            kept = self.keep[self.corpus.ids.long()].double()
            csum = torch.cat([kept.new_zeros(1), kept.cumsum(0)])
            lengths = csum[self.corpus.offsets[1:]] - csum[self.corpus.offsets[:-1]]
            w = self.window
            total = 0.0
            for d in range(1, w + 1):
                total += (w - d + 1) / w * 2 * float((lengths - d).clamp(min=0).sum())
            self._expected = int(round(total))
        return self._expected

    def _pair_stream(self, epoch, device, g):
        ids = self.corpus.ids.to(device)
        sent = self.corpus.sentence_ids().to(device)
        keep = self.keep.to(device)
        while True:
            mask = torch.rand(len(ids), device=device, generator=g) < keep[ids.long()]
            kept, kept_sent = ids[mask], sent[mask]
            n = len(kept)
            first = torch.ones(n, dtype=torch.bool, device=device)
            first[1:] = kept_sent[1:] != kept_sent[:-1]
            pos = torch.arange(n, device=device)
            starts = pos[first]
            ends = torch.cat([starts[1:], starts.new_tensor([n])])
            which = first.cumsum(0) - 1
            reach = torch.randint(1, self.window + 1, (n,), device=device, generator=g)
            left = torch.minimum(reach, pos - starts[which])
            right = torch.minimum(reach, ends[which] - 1 - pos)
            n_blocks = -(-n // self.block_tokens)
            order = torch.randperm(n_blocks, device=device, generator=g)
            for b0 in range(0, n_blocks, self.shuffle_blocks):
                blocks = order[b0 : b0 + self.shuffle_blocks]
                centre = (
                    blocks.unsqueeze(1) * self.block_tokens
                    + torch.arange(self.block_tokens, device=device)
                ).flatten()
                centre = centre[centre < n]
                centre = centre[torch.randperm(len(centre), device=device, generator=g)]
                lc = left[centre]
                count = lc + right[centre]
                total = int(count.sum())
                run_start = count.cumsum(0) - count
                j = torch.arange(total, device=device)
                key = j + torch.repeat_interleave(centre - lc - run_start, count, output_size=total)
                key += j >= torch.repeat_interleave(run_start + lc, count, output_size=total)
                query = torch.repeat_interleave(kept[centre].long(), count, output_size=total)
                yield query, kept[key].long()


def _batches(pairs, batch_size, epoch):
    return [(b.query, b.key) for b in pairs.batches(batch_size, epoch=epoch, device="cpu")]


@pytest.mark.parametrize("suffix", [".txt", ".gz"])
def test_cache_equals_the_in_memory_encoding(tmp_path, suffix):
    path = _write_lines(tmp_path / f"corpus{suffix}")
    text = TextCorpus.from_file(path, tokenizer=whitespace_words, max_sentence_words=7)
    vocab, enc = cached_encoding(text, _key(path), tmp_path / "cache", min_count=2)
    want_vocab = Vocabulary.build(text, min_count=2)
    want = encode_corpus(text, want_vocab)
    assert vocab.words == want_vocab.words and torch.equal(vocab.counts, want_vocab.counts)
    assert isinstance(enc.ids, MappedArray) and isinstance(enc.ids.memmap(), np.memmap)
    assert torch.equal(enc.ids[:], want.ids) and torch.equal(enc.offsets[:], want.offsets)
    assert enc.raw_words == want.raw_words
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == [
        "ids.int32",
        "meta.json",
        "offsets.int64",
        "vocab.txt",
    ]
    assert not [p for p in tmp_path.iterdir() if ".tmp-" in p.name]  # the temp folder is gone


@pytest.mark.parametrize(
    ("window", "sample", "block_tokens", "shuffle_blocks"),
    [(5, 1e-3, 256, 4), (3, 0.0, 100, 2), (7, 1e-2, 1 << 16, 1)],
)
def test_pairs_from_the_memmap_equal_the_in_memory_pairs(
    tmp_path, window, sample, block_tokens, shuffle_blocks
):
    path = _write_lines(tmp_path / "corpus.txt", sentences=300)
    text = TextCorpus.from_file(path, tokenizer=whitespace_words)
    vocab, mapped = cached_encoding(text, _key(path), tmp_path / "cache", min_count=2)
    in_memory = encode_corpus(text, vocab)
    settings = dict(window=window, sample=sample, block_tokens=block_tokens, seed=4)
    settings["shuffle_blocks"] = shuffle_blocks
    old = _OldContextPairs(in_memory, vocab.counts, **settings)
    new_mapped = ContextPairs(mapped, vocab.counts, **settings)
    new_memory = ContextPairs(in_memory, vocab.counts, **settings)
    new_mapped.read_tokens = 500  # the expected pair count summed over many reads
    new_mapped.centres_per_yield = 61  # a group's pairs yielded in parts
    assert new_mapped.num_pairs() == new_memory.num_pairs() == old.num_pairs()
    for epoch in (0, 1):
        want = _batches(old, 97, epoch)  # 97: batches straddle the groups' pair runs
        for pairs in (new_mapped, new_memory):
            got = _batches(pairs, 97, epoch)
            assert len(got) == len(want)
            for (gq, gk), (wq, wk) in zip(got, want, strict=True):
                assert torch.equal(gq, wq) and torch.equal(gk, wk)
    # past the end of an epoch the stream starts a second pass: the same there too
    old_stream = old._pair_stream(0, torch.device("cpu"), old._generator(0, torch.device("cpu")))
    new_stream = new_mapped._pair_stream(
        0, torch.device("cpu"), new_mapped._generator(0, torch.device("cpu"))
    )
    for _ in range(2 * (-(-len(mapped.ids) // block_tokens)) + 3):
        oq, ok = next(old_stream)  # a group's pairs, which the new stream yields in parts
        parts = [next(new_stream)]
        while sum(len(q) for q, _ in parts) < len(oq):
            parts.append(next(new_stream))
        nq, nk = torch.cat([q for q, _ in parts]), torch.cat([k for _, k in parts])
        assert torch.equal(oq, nq) and torch.equal(ok, nk)


def test_second_run_reads_the_cache_without_reading_the_corpus(tmp_path):
    path = _write_lines(tmp_path / "corpus.txt")
    text = TextCorpus.from_file(path, tokenizer=whitespace_words)
    first_vocab, first = cached_encoding(text, _key(path), tmp_path / "cache", min_count=2)

    def untouched():
        raise AssertionError("the corpus was read again")
        yield

    vocab, again = cached_encoding(untouched(), _key(path), tmp_path / "cache", min_count=2)
    assert vocab.words == first_vocab.words
    assert torch.equal(again.ids[:], first.ids[:]) and again.raw_words == first.raw_words
    # the default folder is named by the key, under $MULTICON_CACHE
    assert key_folder({"a": 1}, tmp_path) != key_folder({"a": 2}, tmp_path)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"tokenizer": "lowercase"}, "tokenizer"),
        ({"corpus": {"file": "other.txt", "size": 1, "mtime_ns": 0}}, "corpus"),
        ({"min_count": 1}, "vocabulary"),
    ],
)
def test_a_cache_of_another_corpus_tokenizer_or_vocabulary_is_refused(tmp_path, change, field):
    path = _write_lines(tmp_path / "corpus.txt", sentences=50)
    text = TextCorpus.from_file(path, tokenizer=whitespace_words)
    cached_encoding(text, _key(path), tmp_path / "cache", min_count=2)
    before = (tmp_path / "cache" / "ids.int32").read_bytes()
    key, min_count = _key(path), change.pop("min_count", 2)
    key.update(change)
    meta = str(tmp_path / "cache" / "meta.json")
    with pytest.raises(ValueError, match=f"{meta}: .*another corpus.*{field}: cache has"):
        cached_encoding(text, key, tmp_path / "cache", min_count=min_count)
    assert (tmp_path / "cache" / "ids.int32").read_bytes() == before  # refused, not rebuilt


def test_a_changed_corpus_file_is_not_read_from_the_old_cache(tmp_path):
    path = _write_lines(tmp_path / "corpus.txt", sentences=50)
    text = TextCorpus.from_file(path, tokenizer=whitespace_words)
    cached_encoding(text, _key(path), tmp_path / "cache")
    _write_lines(path, sentences=60, seed=1)
    with pytest.raises(ValueError, match="meta.json: .*corpus: cache has"):
        cached_encoding(text, _key(path), tmp_path / "cache")


def test_a_folder_that_is_not_a_cache_or_a_truncated_cache_is_refused(tmp_path):
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "todo.txt").write_text("x")
    with pytest.raises(ValueError, match=r"notes is not a token cache \(no meta.json\)"):
        cached_encoding([["a", "b"]], {"c": 1}, tmp_path / "notes")
    vocab, enc = cached_encoding([["a", "b"]] * 3, {"c": 1}, tmp_path / "cache")
    with open(tmp_path / "cache" / "ids.int32", "r+b") as f:
        f.truncate(8)
    with pytest.raises(ValueError, match=r"ids.int32: 2 entries, meta.json says 6"):
        cached_encoding([], {"c": 1}, tmp_path / "cache")


def test_a_failed_build_leaves_no_cache(tmp_path):
    def broken():
        yield ["a", "b"]
        raise OSError("disk gone")

    with pytest.raises(OSError, match="disk gone"):
        cached_encoding(broken(), {"c": 1}, tmp_path / "cache")
    assert list(tmp_path.iterdir()) == []  # neither the cache nor its temporary folder


def test_a_streaming_dataset_goes_through_the_cache(tmp_path):
    datasets = pytest.importorskip("datasets")
    path = _write_lines(tmp_path / "corpus.txt", sentences=200)
    rows = path.read_text().splitlines()
    stream = datasets.Dataset.from_dict({"text": rows}).to_iterable_dataset(num_shards=2)
    assert isinstance(stream, datasets.IterableDataset)
    text = TextCorpus.from_dataset(stream, "text", tokenizer=whitespace_words)
    key = {"corpus": dataset_identity(stream, "local/rows"), "tokenizer": "whitespace"}
    vocab, enc = cached_encoding(text, key, tmp_path / "cache", min_count=2)
    from_file = TextCorpus.from_file(path, tokenizer=whitespace_words)
    want_vocab = Vocabulary.build(from_file, min_count=2)
    want = encode_corpus(from_file, want_vocab)
    assert vocab.words == want_vocab.words and isinstance(enc.ids, MappedArray)
    assert torch.equal(enc.ids[:], want.ids) and torch.equal(enc.offsets[:], want.offsets)
    with pytest.raises(ValueError, match="streaming dataset has no content fingerprint"):
        dataset_identity(stream)
    in_memory = datasets.Dataset.from_dict({"text": rows})
    assert dataset_identity(in_memory) == {"dataset_fingerprint": in_memory._fingerprint}


class _CountingArray(MappedArray):
    """A MappedArray that remembers the longest range read from it."""

    longest = 0

    def _read(self, start, stop):
        type(self).longest = max(type(self).longest, stop - start)
        return super()._read(start, stop)


def test_pairs_read_the_memmap_in_blocks_never_whole(tmp_path):
    path = _write_lines(tmp_path / "corpus.txt", sentences=2000)
    text = TextCorpus.from_file(path, tokenizer=whitespace_words)
    vocab, enc = cached_encoding(text, _key(path), tmp_path / "cache", min_count=2)
    ids = _CountingArray(tmp_path / "cache" / "ids.int32", "int32")
    offsets = _CountingArray(tmp_path / "cache" / "offsets.int64", "int64")
    corpus = EncodedCorpus(ids, offsets, enc.raw_words)
    assert len(ids) > 20_000
    pairs = ContextPairs(corpus, vocab.counts, window=5, sample=1e-3, block_tokens=1000)
    pairs.read_tokens = 4000  # whole-corpus scans (counts, expected pairs) read in pieces
    _CountingArray.longest = 0
    n = sum(len(b.query) for b in pairs.batches(512, epoch=0, device="cpu"))
    assert n == pairs.num_pairs()
    assert 0 < _CountingArray.longest <= 4000  # never the whole id array (or offsets) at once
