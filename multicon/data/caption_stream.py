"""Image–caption pairs streamed from tar shards: never all in memory, split across processes
and DataLoader workers, shuffled with a buffer, and replayable for an exact resume.

How an epoch is made, on each of ``world_size`` processes with ``num_workers`` workers each
(``num_workers=0`` counts as one):

* Shard ``i`` belongs to the reader ``i % (world_size * workers)``; reader ``rank + world_size *
  worker`` is that process's worker. The split is the same every epoch.
* Each reader visits its shards in an order drawn from ``(seed, epoch, reader)`` and passes its
  samples (encoded, not decoded) through a shuffle buffer of ``shuffle_buffer`` samples drawn
  from the same generator; each sample it emits gets its own seed, which picks its caption and
  seeds its image augmentation. So the stream is a pure function of (seed, epoch, world_size,
  num_workers, batch_size): the trainer resumes mid-epoch by replaying the epoch and dropping
  its first batches — exact, nothing repeated or skipped; those batches are read and decoded
  again, not trained on. Resuming with another world size, worker count or batch size gives
  that epoch another order (some of its samples repeat, others are missed), later epochs are
  as usual.
* Each reader collates its own batches and drops its last partial one. Every process takes the
  same number of steps: the fewest full batches any process's readers hold
  (`StreamedCaptionPairs.num_batches`, from the shard sizes); a process with more stops there
  (its last samples sit out this epoch — different ones each epoch), and one that runs short
  because bad records were skipped reads its shards again (a few samples repeat).
"""

from __future__ import annotations

import io
import logging
import random
from collections import Counter
from collections.abc import Callable, Iterator, Sequence

import torch
from PIL import Image
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from multicon.data.captions import bad_record, check_on_error
from multicon.data.shards import Sample, check_sample, iter_samples, list_shards, shard_sizes
from multicon.encoders.tokenization import count_truncated, tokenize_batch
from multicon.pairs.base import BatchPairGenerator, Pair, PairBatch

logger = logging.getLogger(__name__)

#: captions read from the first samples to train a tokenizer on a streamed corpus
TOKENIZER_SAMPLE = 100_000


class CaptionShardStream:
    """Tar shards to be streamed: the shard list, the samples in each, how captions are read.

    ``len(stream)`` is the number of samples (keys) in the shards; ``stream.skipped`` counts the
    bad records this process has met while streaming (each once, however many epochs).

    Example:
        >>> import tempfile
        >>> from PIL import Image
        >>> from multicon.data.captions import CaptionCorpus
        >>> from multicon.data.shards import write_shards
        >>> class Three(CaptionCorpus):
        ...     captions, skipped = [["red"], ["blue"], ["green"]], Counter()
        ...     def _load_image(self, i): return Image.new("RGB", (4, 4), self.captions[i][0])
        >>> tmp = tempfile.TemporaryDirectory()
        >>> stream = CaptionShardStream(write_shards(Three(), tmp.name, samples_per_shard=2))
        >>> len(stream), stream.sizes, stream.flat_captions()[0]
        (3, [2, 1], ['red', 'blue', 'green'])
        >>> tmp.cleanup()
    """

    def __init__(
        self,
        pattern: str,
        *,
        caption_columns: str | Sequence[str] = "caption",
        on_error: str = "skip",
    ) -> None:
        check_on_error(on_error)
        self.pattern, self.on_error = pattern, on_error
        self.caption_columns = (
            [caption_columns] if isinstance(caption_columns, str) else list(caption_columns)
        )
        self.shards = list_shards(pattern)
        self.sizes = shard_sizes(self.shards)
        if sum(self.sizes) == 0:
            raise ValueError(f"the shards of {pattern!r} hold no samples")
        self.offsets = [sum(self.sizes[:i]) for i in range(len(self.sizes))]
        self._bad: dict[tuple[str, str], int] = {}
        self._caption_sample: tuple[list[str], list[int]] | None = None

    def __len__(self) -> int:
        return sum(self.sizes)

    @property
    def skipped(self) -> Counter:
        counts: Counter = Counter()
        for (reason, _), n in self._bad.items():
            counts[reason] += n
        return counts

    def note_bad(self, records: Sequence[tuple[str, str, int]]) -> None:
        """Count bad records ``(reason, where, n)`` met while streaming (each place once)."""
        for reason, where, n in records:
            self._bad[(reason, where)] = n

    def flat_captions(self) -> tuple[list[str], list[int]]:
        """The captions of the first `TOKENIZER_SAMPLE` samples (all of a smaller corpus), and
        the sample each describes: enough to train a tokenizer, without reading the images."""
        if self._caption_sample is None:
            texts, owners, skipped = [], [], Counter()
            ids = (
                (self.offsets[s] + pos, shard, sample)
                for s, shard in enumerate(self.shards)
                for pos, sample in enumerate(iter_samples(shard, read_images=False))
            )
            for sample_id, shard, sample in ids:
                if sample_id >= TOKENIZER_SAMPLE:
                    break
                caps = check_sample(sample, self.caption_columns, shard.name, skipped, False)[1]
                texts += caps
                owners += [sample_id] * len(caps)
            if not texts:
                raise ValueError(f"the shards of {self.pattern!r} hold no non-empty caption")
            self._caption_sample = texts, owners
        return self._caption_sample

    def readers_shards(self, reader: int, readers: int) -> list[int]:
        """The shards (indices) of one of ``readers`` readers."""
        return list(range(reader, len(self.shards), readers))

    def samples(self, shard_ids: Sequence[int]) -> Iterator[tuple[int, str, Sample]]:
        """(global id, ``shard:key``, sample) of each sample of these shards, in this order."""
        for s in shard_ids:
            shard = self.shards[s]
            for pos, sample in enumerate(iter_samples(shard)):
                if pos >= self.sizes[s]:
                    raise ValueError(
                        f"{shard}: holds more than the {self.sizes[s]} samples its "
                        "sizes.json gives; correct or delete sizes.json"
                    )
                yield self.offsets[s] + pos, f"{shard}:{sample.key}", sample


def buffer_shuffle(items: Iterator, size: int, rng: random.Random) -> Iterator:
    """Items in a random order that only ever holds ``size`` of them (WebDataset's shuffle).

    Example:
        >>> out = list(buffer_shuffle(iter(range(10)), 4, random.Random(0)))
        >>> sorted(out) == list(range(10)), out != list(range(10))
        (True, True)
    """
    buffer: list = []
    for item in items:
        if len(buffer) < size:
            buffer.append(item)
            continue
        j = rng.randrange(size)
        yield buffer[j]
        buffer[j] = item
    rng.shuffle(buffer)
    yield from buffer


class _EpochReaders(IterableDataset):
    """One process's readers for one pass of one epoch: each DataLoader worker runs one."""

    def __init__(self, pairs: StreamedCaptionPairs, batch_size: int, epoch: int, pass_: int,
                 rank: int, world_size: int) -> None:  # fmt: skip
        self.pairs, self.batch_size = pairs, batch_size
        self.epoch, self.pass_, self.rank, self.world_size = epoch, pass_, rank, world_size

    def __iter__(self):
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        reader = self.rank + self.world_size * worker
        yield from self.pairs.reader_batches(
            reader, self.world_size * workers, self.batch_size, self.epoch, self.pass_
        )


class StreamedCaptionPairs(BatchPairGenerator):
    """(image tensor, caption, sample id) pairs streamed from a `CaptionShardStream`, in batches
    made by DataLoader workers (see the module docstring for the order and the resume).

    Args:
        stream: the shards.
        tokenizer: a transformers tokenizer with a pad token.
        transform: PIL image → tensor (e.g. ``DualEncoder.image_transform(train=True)``).
        max_length: tokens kept per caption (default: the tokenizer's ``model_max_length``).
        seed: with the epoch, fixes the shard order, the shuffle, captions and augmentations.
        num_workers: DataLoader worker processes per process (0: read in the training process).
        shuffle_buffer: samples held (encoded) by each reader's shuffle buffer.

    Example:
        >>> import tempfile
        >>> from torchvision.transforms.functional import pil_to_tensor
        >>> from multicon.data.captions import CaptionCorpus
        >>> from multicon.data.shards import write_shards
        >>> from multicon.encoders.tokenization import train_sentencepiece_tokenizer
        >>> class Four(CaptionCorpus):
        ...     captions, skipped = [["red"], ["blue"], ["green"], ["white"]], Counter()
        ...     def _load_image(self, i): return Image.new("RGB", (4, 4), self.captions[i][0])
        >>> tmp = tempfile.TemporaryDirectory()
        >>> stream = CaptionShardStream(write_shards(Four(), tmp.name, samples_per_shard=2))
        >>> tok = train_sentencepiece_tokenizer(["red", "blue", "green", "white"] * 9,
        ...                                     vocab_size=20, max_length=8)
        >>> pairs = StreamedCaptionPairs(stream, tok, transform=pil_to_tensor)
        >>> [b.key_id.tolist() for b in pairs.batches(2, epoch=0, device="cpu")]
        [[1, 2], [0, 3]]
        >>> tmp.cleanup()
    """

    drop_last = True

    def __init__(
        self,
        stream: CaptionShardStream,
        tokenizer,
        *,
        transform: Callable,
        max_length: int | None = None,
        seed: int = 0,
        num_workers: int = 0,
        shuffle_buffer: int = 1000,
    ) -> None:
        if tokenizer.pad_token is None:
            raise ValueError("the tokenizer has no pad token; captions in a batch must be padded")
        if shuffle_buffer < 1 or num_workers < 0:
            raise ValueError(
                f"shuffle_buffer must be >= 1 and num_workers >= 0, got {shuffle_buffer}, "
                f"{num_workers}"
            )
        self.stream, self.tokenizer, self.transform = stream, tokenizer, transform
        self.max_length = max_length if max_length is not None else tokenizer.model_max_length
        self.seed, self.num_workers, self.shuffle_buffer = seed, num_workers, shuffle_buffer
        texts, _ = stream.flat_captions()
        # counted on the captions read for the tokenizer (all of them in a small corpus)
        self.num_captions = len(texts)
        self.num_truncated = count_truncated(tokenizer, texts, self.max_length)

    def num_pairs(self) -> int:
        return len(self.stream)

    def _readers(self, world_size: int) -> int:
        if len(self.stream.shards) < world_size:
            raise ValueError(
                f"{len(self.stream.shards)} shards cannot be split over {world_size} processes: "
                "each process needs at least one shard (write more, smaller shards)"
            )
        return world_size * max(self.num_workers, 1)

    def num_batches(self, batch_size: int, world_size: int = 1) -> int:
        """Steps per epoch: the fewest full batches any process's readers hold."""
        readers = self._readers(world_size)
        per_reader = [
            sum(self.stream.sizes[s] for s in self.stream.readers_shards(r, readers)) // batch_size
            for r in range(readers)
        ]
        steps = min(sum(per_reader[r::world_size]) for r in range(world_size))
        if steps == 0:
            raise ValueError(
                f"no process has a full batch of {batch_size}: {len(self.stream)} samples in "
                f"{len(self.stream.shards)} shards, read by {world_size} processes x "
                f"{max(self.num_workers, 1)} readers each (use smaller batches, fewer workers or "
                "more shards)"
            )
        return steps

    def batches(
        self,
        batch_size: int,
        *,
        epoch: int,
        device: torch.device | str,
        rank: int = 0,
        world_size: int = 1,
    ) -> Iterator[PairBatch]:
        steps, done, pass_ = self.num_batches(batch_size, world_size), 0, 0
        while done < steps:
            loader = DataLoader(
                _EpochReaders(self, batch_size, epoch, pass_, rank, world_size),
                batch_size=None,
                num_workers=self.num_workers,
                # its own generator: making the loader must not draw from the global RNG
                generator=torch.Generator().manual_seed(0),
            )
            made = 0
            for batch, bad in loader:
                self.stream.note_bad(bad)
                if batch is None:
                    continue
                made += 1
                yield batch.to(device)
                done += 1
                if done == steps:
                    return
            if made == 0:
                raise ValueError(
                    f"process {rank}'s shards gave no full batch of {batch_size} in epoch {epoch} "
                    f"(bad records skipped: {dict(self.stream.skipped)})"
                )
            logger.warning("process %d re-reads its shards in epoch %d: bad records", rank, epoch)
            pass_ += 1

    def reader_batches(
        self, reader: int, readers: int, batch_size: int, epoch: int, pass_: int
    ) -> Iterator[tuple[PairBatch | None, list[tuple[str, str, int]]]]:
        """One reader's batches, each with the bad records met since the last one."""
        order = random.Random(f"order/{self.seed}/{epoch}/{pass_}/{reader}")
        seeds = random.Random(f"samples/{self.seed}/{epoch}/{pass_}/{reader}")
        shard_ids = self.stream.readers_shards(reader, readers)
        order.shuffle(shard_ids)
        batch, bad = [], []
        for sample_id, where, sample in buffer_shuffle(
            self.stream.samples(shard_ids), self.shuffle_buffer, order
        ):
            pair = self._pair(sample_id, where, sample, seeds.getrandbits(63), bad)
            if pair is None:
                continue
            batch.append(pair)
            if len(batch) == batch_size:
                yield self.collate(batch), bad
                batch, bad = [], []
        if bad:
            yield None, bad

    def _pair(
        self, sample_id: int, where: str, sample: Sample, seed: int, bad: list
    ) -> Pair | None:
        empty: Counter = Counter()
        problem, captions = check_sample(sample, self.stream.caption_columns, where, empty, False)
        if problem is None:
            try:
                image = Image.open(io.BytesIO(sample.image()[1])).convert("RGB")
            except (OSError, SyntaxError, ValueError):
                problem = "unreadable_image"
        if problem is not None and self.stream.on_error == "raise":
            raise bad_record(problem, where)
        if empty:
            bad.append(("empty_caption", where, empty["empty_caption"]))
        if problem is not None:
            bad.append((problem, where, 1))
            return None
        caption = captions[random.Random(seed).randrange(len(captions))]
        with torch.random.fork_rng(devices=[]):  # the augmentation's draws, from this seed
            torch.manual_seed(seed)
            tensor = self.transform(image)
        return Pair(tensor, caption, sample_id)

    def collate(self, pairs: list[Pair]) -> PairBatch:
        images = torch.stack([p.query for p in pairs])
        key = tokenize_batch(self.tokenizer, [p.key for p in pairs], self.max_length)
        return PairBatch(images, key, torch.tensor([p.key_id for p in pairs], dtype=torch.long))
