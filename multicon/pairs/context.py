"""Context-word pairs (word2vec skip-gram), made with tensor ops on the training device.

Each epoch, from the corpus's token-id tensor:

1. frequent words are dropped with word2vec's subsampling, keep probability
   ``(sqrt(f / t) + 1) * t / f`` for a word of count ``f`` and ``t = sample * total``;
2. every kept word draws a reduced window ``b ~ U{1..window}`` (word2vec's ``b = rand % window``)
   and is paired, as the query, with each kept word at most ``b`` positions away in the same
   sentence, the key (``key_id`` = the context word, so the same context word twice in a batch is
   never its own negative);
3. pairs are shuffled: the kept words are cut into blocks taken in a fresh random order each
   epoch, and the centre words of ``shuffle_blocks`` blocks at a time are permuted together (a
   centre's pairs stay adjacent: with a summed loss only which pairs share a batch matters).

Pairs are built from each centre's room to the left and right (its reduced window cut at the
sentence edges). On the CPU, C loops subsample (`kept_words`) and write the pairs (`group_pairs`);
elsewhere tensor ops give the same. Only one group of blocks exists at a time, so memory does not
grow with the corpus. The number of pairs in an epoch is random;
`num_pairs` is its expectation and `batches` yields exactly `num_batches` global batches (drawing
a little past the epoch, or stopping a little short), so every process and the learning-rate
schedule agree on the step count.
"""

from __future__ import annotations

import bisect
import ctypes
import functools
from collections.abc import Iterator

import torch

from multicon import native
from multicon.data.corpus import EncodedCorpus
from multicon.pairs.base import BatchPairGenerator, PairBatch, epoch_seed


def keep_probability(counts: torch.Tensor, sample: float) -> torch.Tensor:
    """word2vec's subsampling keep probability per word (1 where ``sample`` is 0; above 1: kept).

    Example:
        >>> [round(p, 3) for p in keep_probability(torch.tensor([1000, 1]), 1e-3).tolist()]
        [0.033, 2.001]
    """
    counts = counts.double()
    if sample <= 0:
        return torch.ones_like(counts)
    t = sample * counts.sum()
    return ((counts / t).sqrt() + 1) * t / counts.clamp(min=1)


class ContextPairs(BatchPairGenerator):
    """(centre word, context word) pairs of a tokenized corpus.

    Args:
        corpus: the token ids and sentence offsets (`multicon.data.corpus.encode_corpus`).
        counts: ``(V,)`` word counts, for subsampling (`Vocabulary.counts`).
        window: maximum distance between centre and context word (word2vec ``-window``).
        sample: subsampling threshold (word2vec ``-sample``); 0 disables it.
        block_tokens: corpus tokens per shuffle block.
        shuffle_blocks: blocks whose pairs are permuted together (docs/studies/hogbatch-simlex.md).
        seed: base seed; epoch ``e`` draws from ``(seed, e)``.

    Example:
        >>> import torch
        >>> from multicon.data.corpus import EncodedCorpus
        >>> corpus = EncodedCorpus(torch.tensor([0, 1, 2, 3, 4], dtype=torch.int32),
        ...                        torch.tensor([0, 3, 5]), raw_words=5)
        >>> pairs = ContextPairs(corpus, torch.ones(5, dtype=torch.long), window=1, sample=0)
        >>> pairs.num_pairs()   # 0-1, 1-0, 1-2, 2-1 in the first sentence, 3-4, 4-3 in the second
        6
        >>> batch = next(pairs.batches(6, epoch=0, device="cpu"))
        >>> sorted(zip(batch.query.tolist(), batch.key.tolist()))
        [(0, 1), (1, 0), (1, 2), (2, 1), (3, 4), (4, 3)]
    """

    read_tokens = 1 << 20  # corpus tokens read at a time by whole-corpus scans
    centres_per_yield = 1 << 16  # centres whose pairs the stream yields at a time

    def __init__(
        self,
        corpus: EncodedCorpus,
        counts: torch.Tensor,
        *,
        window: int = 5,
        sample: float = 1e-3,
        block_tokens: int = 1 << 16,
        shuffle_blocks: int = 16,
        seed: int = 0,
    ) -> None:
        if not isinstance(window, int) or window < 1:
            raise ValueError(f"window must be an integer >= 1, got {window!r}")
        if sample < 0:
            raise ValueError(f"sample must be >= 0, got {sample}")
        if block_tokens < 1 or shuffle_blocks < 1:
            raise ValueError("block_tokens and shuffle_blocks must be >= 1")
        counts = torch.as_tensor(counts)
        top = _max_id(corpus, max(block_tokens, self.read_tokens))
        if top >= len(counts):
            raise ValueError(f"corpus holds token id {top} but counts cover {len(counts)}")
        self.corpus, self.counts = corpus, counts
        self.window, self.sample = window, sample
        self.block_tokens, self.shuffle_blocks = block_tokens, shuffle_blocks
        self.seed = seed
        self.keep = keep_probability(counts, sample).clamp(max=1.0).float()
        self._expected: int | None = None

    # -- sizes --------------------------------------------------------------------------------
    def num_pairs(self) -> int:
        """Expected pairs per epoch, from each sentence's expected kept length."""
        if self._expected is None:
            w = self.window
            per_distance = [0.0] * w  # sum over sentences of max(length - d, 0), d = 1..w
            carry = torch.zeros(1, dtype=torch.float64)  # kept-probability sum of earlier tokens
            corpus, s, n_sent = self.corpus, 0, self.corpus.num_sentences
            while s < n_sent:  # whole sentences, about `read_tokens` tokens at a time
                start = int(corpus.read_offsets(s, s + 1)[0])
                e = min(max(corpus.sentence_of(start + self.read_tokens), s + 1), n_sent)
                off = corpus.read_offsets(s, e + 1)
                kept = self.keep[corpus.read_ids(int(off[0]), int(off[-1])).long()].double()
                # a running cumulative sum from the carry: the same additions, in the same
                # order, as one cumulative sum over the whole corpus
                csum = torch.cat([carry, kept]).cumsum(0)
                at = csum[off - off[0]]
                lengths = at[1:] - at[:-1]
                carry = at[-1:]
                for d in range(1, w + 1):
                    per_distance[d - 1] += float((lengths - d).clamp(min=0).sum())
                s = e
            total = 0.0
            for d in range(1, w + 1):  # P(b >= d) * number of positions d apart, both ways
                total += (w - d + 1) / w * 2 * per_distance[d - 1]
            if total < 1:
                raise ValueError(
                    "the corpus yields no context pairs: every sentence has at most one word "
                    "(after subsampling); use longer sentences or a smaller `sample`"
                )
            self._expected = int(round(total))
        return self._expected

    def key_frequencies(self) -> torch.Tensor:
        """``(V,)`` expected frequency of each word as a key (context) after subsampling.

        The distribution in-batch and queued negatives follow: the ``Q`` of a logQ correction.
        """
        kept = self.counts.double() * self.keep.double()
        return (kept / kept.sum()).float()

    # -- pairs --------------------------------------------------------------------------------
    def _generator(self, epoch: int, device: torch.device) -> torch.Generator:
        g = torch.Generator(device=device)
        g.manual_seed(epoch_seed(self.seed, epoch))
        return g

    def _pair_stream(
        self, epoch: int, device: torch.device, g: torch.Generator
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """(centre, context) id tensors, one group of shuffled blocks at a time, forever.

        Centres are permuted within a group and each centre's pairs stay together: with a
        summed loss only which pairs share a batch matters, not their order inside it.

        The corpus is read in ranges, never whole. A pass first draws the subsampling mask chunk
        by chunk and the reduced windows block by block, keeping only the generator's state at
        each chunk and block and the kept count per chunk; a group of blocks then replays the
        draws it needs from those states. The random numbers, and so the pairs, are the ones a
        single draw over the whole corpus gives (draws in pieces continue one stream).
        """
        corpus, size, w = self.corpus, self.block_tokens, self.window
        keep = self.keep.to(device)
        n_tokens = corpus.num_tokens
        while True:
            produced = 0
            mask_states, kept_before = [], [0]  # per chunk of `size` corpus tokens
            for a in range(0, n_tokens, size):
                mask_states.append(g.get_state())
                ids = corpus.read_ids(a, min(a + size, n_tokens)).to(device)
                draw = torch.rand(len(ids), device=device, generator=g)
                kept_before.append(kept_before[-1] + kept_count(ids, draw, keep))
            n = kept_before[-1]
            if n == 0:
                raise ValueError("subsampling kept no words: raise `sample` or use a larger corpus")
            n_blocks = -(-n // size)
            reach_states = []  # per block of `size` kept words: b ~ U{1..window} for each
            for b in range(n_blocks):
                reach_states.append(g.get_state())
                torch.randint(1, w + 1, (min(size, n - b * size),), device=device, generator=g)
            order = torch.randperm(n_blocks, device=device, generator=g)
            for b0 in range(0, n_blocks, self.shuffle_blocks):
                kept_parts, centre_parts, left_parts, right_parts, local = [], [], [], [], 0
                for b in order[b0 : b0 + self.shuffle_blocks].tolist():
                    lo, hi = b * size, min((b + 1) * size, n)
                    a, e = max(lo - w, 0), min(hi + w, n)  # the block and `window` words around
                    kept, sent = self._kept_range(a, e, mask_states, kept_before, keep, device)
                    replay = torch.Generator(device=device)
                    replay.set_state(reach_states[b])
                    reach = torch.randint(1, w + 1, (hi - lo,), device=device, generator=replay)
                    left, right = _rooms(sent, reach, lo - a)
                    kept_parts.append(kept)
                    centre_parts.append(torch.arange(lo - a, hi - a, device=device) + local)
                    left_parts.append(left)
                    right_parts.append(right)
                    local += len(kept)
                centre = torch.cat(centre_parts)
                perm = torch.randperm(len(centre), device=device, generator=g)
                kept = torch.cat(kept_parts)
                left, right = torch.cat(left_parts), torch.cat(right_parts)
                # a few hundred thousand pairs at a time: a wide group's pairs are never all in
                # memory, and arrays this size are reused by the allocator, not fresh pages
                for part in perm.split(self.centres_per_yield):
                    query, key = group_pairs(kept, centre, left, right, part)
                    produced += len(query)
                    yield query, key
            if produced == 0:  # a whole pass without a pair: never loop forever on it
                raise ValueError("this draw of the corpus yielded no context pairs")

    def _kept_range(
        self,
        a: int,
        e: int,
        mask_states: list[torch.Tensor],
        kept_before: list[int],
        keep: torch.Tensor,
        device: torch.device,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Kept words ``a:e`` (indices among this pass's kept words) and their sentence indices,
        replaying the subsampling draws of the corpus chunks that hold them."""
        corpus, size = self.corpus, self.block_tokens
        c = bisect.bisect_right(kept_before, a) - 1
        first = kept_before[c]
        ids_parts, sent_parts = [], []
        while c < len(mask_states) and kept_before[c] < e:
            start, stop = c * size, min((c + 1) * size, corpus.num_tokens)
            ids = corpus.read_ids(start, stop).to(device)
            replay = torch.Generator(device=device)
            replay.set_state(mask_states[c])
            draw = torch.rand(len(ids), device=device, generator=replay)
            s0, s1 = corpus.sentence_of(start), corpus.sentence_of(stop - 1)
            offsets = corpus.read_offsets(s0, s1 + 2).to(device)
            kept, sent = kept_words(ids, draw, keep, start, offsets, s0)
            ids_parts.append(kept)
            sent_parts.append(sent)
            c += 1
        ids, sent = torch.cat(ids_parts), torch.cat(sent_parts)
        return ids[a - first : e - first], sent[a - first : e - first]

    def batches(
        self,
        batch_size: int,
        *,
        epoch: int,
        device: torch.device | str,
        rank: int = 0,
        world_size: int = 1,
    ) -> Iterator[PairBatch]:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        device = torch.device(device)
        global_batch = batch_size * world_size
        steps = self.num_batches(batch_size, world_size)
        stream = self._pair_stream(epoch, device, self._generator(epoch, device))
        chunk_q = chunk_k = torch.empty(0, dtype=torch.long, device=device)
        at = 0  # next unused pair in the current chunk
        for step in range(steps):
            want = global_batch
            if step == steps - 1 and not self.drop_last:  # the expected remainder
                want = self.num_pairs() - step * global_batch
                want = min(max(want, world_size), global_batch)
            qs, ks, have = [], [], 0
            while have < want:
                if at == len(chunk_q):
                    chunk_q, chunk_k = next(stream)
                    at = 0
                take = min(want - have, len(chunk_q) - at)
                qs.append(chunk_q[at : at + take])
                ks.append(chunk_k[at : at + take])
                at, have = at + take, have + take
            q = qs[0] if len(qs) == 1 else torch.cat(qs)
            k = ks[0] if len(ks) == 1 else torch.cat(ks)
            per_rank = -(-want // world_size)
            sl = slice(rank * per_rank, (rank + 1) * per_rank)
            yield PairBatch(q[sl], k[sl], k[sl])


def kept_count(ids: torch.Tensor, draw: torch.Tensor, keep: torch.Tensor) -> int:
    """How many of the tokens ``ids`` subsampling keeps: those with ``draw < keep[id]``."""
    lib = _native_pairs() if ids.device.type == "cpu" else None
    if lib is None:
        return int((draw < keep[ids.long()]).sum())
    args = [x.contiguous() for x in (ids.to(torch.int32), draw.float(), keep.float())]  # held
    return lib.mc_keep_words(*(x.data_ptr() for x in args), len(ids), 0, None, 0, None, None)


def kept_words(
    ids: torch.Tensor,
    draw: torch.Tensor,
    keep: torch.Tensor,
    start: int,
    offsets: torch.Tensor,
    first: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The tokens ``ids`` (corpus positions ``start ..``) that subsampling keeps (``draw <
    keep[id]``), and the index of each one's sentence; ``offsets`` are the starts of sentences
    ``first ..``, through the end of the last sentence ``ids`` reaches into.

    Example:
        >>> ids, keep = torch.tensor([5, 6, 7, 8], dtype=torch.int32), torch.ones(9)
        >>> draw = torch.tensor([0.5, 2.0, 0.5, 0.5])   # token 6 (a draw above 1) is dropped
        >>> kept, sent = kept_words(ids, draw, keep, 10, torch.tensor([9, 12, 20]), first=3)
        >>> kept.tolist(), sent.tolist()   # tokens 10 and 12 in sentences 3 and 4, 13 in 4
        ([5, 7, 8], [3, 4, 4])
    """
    lib = _native_pairs() if ids.device.type == "cpu" else None
    if lib is None:
        mask = draw < keep[ids.long()]
        pos = torch.arange(start, start + len(ids), device=ids.device)[mask]
        return ids[mask], torch.searchsorted(offsets, pos, right=True) + (first - 1)
    kept = torch.empty(len(ids), dtype=torch.int32)
    sent = torch.empty(len(ids), dtype=torch.long)
    args = [ids.to(torch.int32), draw.float(), keep.float(), offsets.long()]
    args = [x.contiguous() for x in args]  # held while the C loop reads them
    ids_p, draw_p, keep_p, offsets_p = (x.data_ptr() for x in args)
    k = lib.mc_keep_words(
        ids_p, draw_p, keep_p, len(ids), start, offsets_p, first, kept.data_ptr(), sent.data_ptr()
    )
    return kept[:k], sent[:k]


def group_pairs(
    kept: torch.Tensor,
    centre: torch.Tensor,
    left: torch.Tensor,
    right: torch.Tensor,
    order: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The (centre, context) id pairs of one group, centre by centre in ``order``.

    Centre ``i`` is the kept word at ``centre[i]``; it pairs with the ``left[i]`` words before it,
    then the ``right[i]`` words after it. Returns int64 ``query`` (the centre's id, repeated) and
    ``key`` (the context word's id). On the CPU a C loop writes each pair once
    (``multicon/csrc/pairs.c``); elsewhere, or without a C compiler, tensor ops give the same
    pairs.

    Example:
        >>> kept = torch.tensor([7, 8, 9], dtype=torch.int32)
        >>> room = torch.tensor([0, 1, 1]), torch.tensor([1, 1, 0])
        >>> q, k = group_pairs(kept, torch.arange(3), *room, order=torch.tensor([2, 0, 1]))
        >>> list(zip(q.tolist(), k.tolist()))
        [(9, 8), (7, 8), (8, 7), (8, 9)]
    """
    lib = _native_pairs() if kept.device.type == "cpu" else None
    if lib is not None:
        args = [kept.to(torch.int32)] + [x.long() for x in (centre, left, right, order)]
        args = [x.contiguous() for x in args]
        kept_p, centre_p, left_p, right_p, order_p = (x.data_ptr() for x in args)
        total = lib.mc_context_pair_count(left_p, right_p, order_p, len(order))
        query = torch.empty(total, dtype=torch.long)
        key = torch.empty(total, dtype=torch.long)
        lib.mc_context_pairs(
            kept_p, centre_p, left_p, right_p, order_p, len(order), query.data_ptr(), key.data_ptr()
        )
        return query, key
    centre, lc = centre[order], left[order]
    count = lc + right[order]
    total = int(count.sum())
    run_start = count.cumsum(0) - count
    # a centre at c with L words to its left has keys c-L..c-1, c+1..c+R: the j-th pair of its
    # run points at c - L + j, plus one once j reaches L
    j = torch.arange(total, device=kept.device)
    key = j + torch.repeat_interleave(centre - lc - run_start, count, output_size=total)
    key += j >= torch.repeat_interleave(run_start + lc, count, output_size=total)
    query = torch.repeat_interleave(kept[centre].long(), count, output_size=total)
    return query, kept[key].long()


@functools.cache
def _native_pairs() -> ctypes.CDLL | None:
    """The compiled word and pair loops, or None where no C compiler builds them (the tensor ops
    then run)."""
    try:
        lib = native.load("pairs")
    except native.NativeUnavailableError:
        return None
    p, i64 = ctypes.c_void_p, ctypes.c_int64
    lib.mc_context_pairs.argtypes = [p, p, p, p, p, i64, p, p]
    lib.mc_context_pairs.restype = None
    lib.mc_context_pair_count.argtypes = [p, p, p, i64]
    lib.mc_context_pair_count.restype = i64
    lib.mc_keep_words.argtypes = [p, p, p, i64, i64, p, i64, p, p]
    lib.mc_keep_words.restype = i64
    return lib


def _max_id(corpus: EncodedCorpus, chunk: int) -> int:
    """The largest token id of the corpus (-1 if empty), read ``chunk`` tokens at a time."""
    top = -1
    for a in range(0, corpus.num_tokens, chunk):
        top = max(top, int(corpus.read_ids(a, min(a + chunk, corpus.num_tokens)).max()))
    return top


def _rooms(sent: torch.Tensor, reach: torch.Tensor, lo: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Words each centre ``lo .. lo + len(reach) - 1`` of ``sent`` pairs with to its left and
    right: its reduced window ``reach`` cut at its sentence's edges.

    ``sent`` spans the centres and up to ``window`` words either side; where it was cut short of
    a sentence's edge, at least ``window`` >= ``reach`` words lie beyond, so the cut is harmless.
    """
    n = len(sent)
    first = torch.ones(n, dtype=torch.bool, device=sent.device)
    first[1:] = sent[1:] != sent[:-1]
    pos = torch.arange(n, device=sent.device)
    starts = pos[first]
    ends = torch.cat([starts[1:], starts.new_tensor([n])])
    which = (first.cumsum(0) - 1)[lo : lo + len(reach)]
    centre = pos[lo : lo + len(reach)]
    left = torch.minimum(reach, centre - starts[which])
    right = torch.minimum(reach, ends[which] - 1 - centre)
    return left, right
