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

Pairs are built with ``repeat_interleave`` from each centre's room to the left and right (its
reduced window cut at the sentence edges). Only one group of blocks' pairs exists at a time, so
memory does not grow with the corpus. The
number of pairs in an epoch is random; `num_pairs` is its expectation and `batches` yields exactly
`num_batches` global batches (drawing a little past the epoch, or stopping a little short), so
every process and the learning-rate schedule agree on the step count.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch

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
        shuffle_blocks: blocks whose pairs are permuted together.
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

    def __init__(
        self,
        corpus: EncodedCorpus,
        counts: torch.Tensor,
        *,
        window: int = 5,
        sample: float = 1e-3,
        block_tokens: int = 1 << 16,
        shuffle_blocks: int = 4,
        seed: int = 0,
    ) -> None:
        if not isinstance(window, int) or window < 1:
            raise ValueError(f"window must be an integer >= 1, got {window!r}")
        if sample < 0:
            raise ValueError(f"sample must be >= 0, got {sample}")
        if block_tokens < 1 or shuffle_blocks < 1:
            raise ValueError("block_tokens and shuffle_blocks must be >= 1")
        counts = torch.as_tensor(counts)
        if len(corpus.ids) and int(corpus.ids.max()) >= len(counts):
            raise ValueError(
                f"corpus holds token id {int(corpus.ids.max())} but counts cover {len(counts)}"
            )
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
            kept = self.keep[self.corpus.ids.long()].double()
            csum = torch.cat([kept.new_zeros(1), kept.cumsum(0)])
            lengths = csum[self.corpus.offsets[1:]] - csum[self.corpus.offsets[:-1]]
            w = self.window
            total = 0.0
            for d in range(1, w + 1):  # P(b >= d) * number of positions d apart, both ways
                total += (w - d + 1) / w * 2 * float((lengths - d).clamp(min=0).sum())
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
        """
        ids = self.corpus.ids.to(device)
        sent = self.corpus.sentence_ids().to(device)
        keep = self.keep.to(device)
        while True:
            produced = 0
            mask = torch.rand(len(ids), device=device, generator=g) < keep[ids.long()]
            kept, kept_sent = ids[mask], sent[mask]
            n = len(kept)
            if n == 0:
                raise ValueError("subsampling kept no words: raise `sample` or use a larger corpus")
            # room to each side inside the sentence, cut to the reduced window b ~ U{1..window}
            first = torch.ones(n, dtype=torch.bool, device=device)
            first[1:] = kept_sent[1:] != kept_sent[:-1]
            pos = torch.arange(n, device=device)
            starts = pos[first]
            ends = torch.cat([starts[1:], starts.new_tensor([n])])
            which = first.cumsum(0) - 1
            reach = torch.randint(1, self.window + 1, (n,), device=device, generator=g)
            left = torch.minimum(reach, pos - starts[which])
            right = torch.minimum(reach, ends[which] - 1 - pos)
            del first, which
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
                # a centre at c with L words to its left has keys c-L..c-1, c+1..c+R: the j-th
                # pair of its run points at c - L + j, plus one once j reaches L
                j = torch.arange(total, device=device)
                key = j + torch.repeat_interleave(centre - lc - run_start, count, output_size=total)
                key += j >= torch.repeat_interleave(run_start + lc, count, output_size=total)
                query = torch.repeat_interleave(kept[centre].long(), count, output_size=total)
                produced += total
                yield query, kept[key].long()
            if produced == 0:  # a whole pass without a pair: never loop forever on it
                raise ValueError("this draw of the corpus yielded no context pairs")

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
