"""Several sources' keys scored as one set: the batch's keys, then a queue, then the queries."""

from __future__ import annotations

import torch

from multicon.dist import gather_no_grad, gather_with_grad
from multicon.keys.base import KeySource, View
from multicon.losses.keyset import KeySet


class OtherQueries(KeySource):
    """The direction's own queries of the global batch (gathered with gradient) as negatives;
    each query's own entry is masked by id. After `BatchKeys` in a `Chain` this is SimCLR's
    NT-Xent: 2B - 2 negatives per view, as SimCLR and lightly's ``NTXentLoss`` score it."""

    def forward(self, view: View) -> KeySet:
        if view.query is None:
            raise ValueError("OtherQueries needs the direction's queries: use it in a model")
        queries = gather_with_grad(view.query)
        empty = torch.zeros(0, dtype=torch.long, device=queries.device)
        return KeySet(queries, gather_no_grad(view.ids), empty)


class Chain(KeySource):
    """The keys of ``sources`` one after another; the first gives each query's positive.

    Example:
        >>> from multicon.keys.batch import BatchKeys
        >>> from multicon.keys.base import StepInputs, View
        >>> from multicon.pairs.base import PairBatch
        >>> enc, x = torch.nn.Linear(3, 4), torch.randn(5, 3)
        >>> view = View(StepInputs(PairBatch(x, x, torch.arange(5))), reverse=False)
        >>> view.query = enc(x)
        >>> Chain(BatchKeys(enc), OtherQueries())(view).keys.shape   # NT-Xent's 2B keys
        torch.Size([10, 4])
    """

    def __init__(self, first: KeySource, *rest: KeySource) -> None:
        super().__init__()
        from multicon.keys.noise import NoiseKeys
        from multicon.keys.queue import PositiveAndQueue

        for i, source in enumerate((first, *rest)):
            if not isinstance(source, KeySource):
                raise TypeError(f"source {i} of a Chain must be a KeySource, got {source!r}")
            if isinstance(source, NoiseKeys | PositiveAndQueue):
                raise TypeError(
                    f"source {i} of a Chain gives each query keys of its own "
                    f"({type(source).__name__}); a Chain joins keys shared by the whole batch"
                )
        if isinstance(first, OtherQueries) or not rest:
            raise ValueError("a Chain needs a first source with the positives, then more sources")
        from multicon.keys.batch import BatchKeys
        from multicon.keys.feature_queue import FeatureQueue

        for source in rest:  # a feature queue re-projects with its tower: the batch's key tower
            if isinstance(source, FeatureQueue) and not (
                isinstance(first, BatchKeys) and first.encoder is source.tower
            ):
                raise ValueError(
                    "a FeatureQueue must follow BatchKeys over its own tower: it holds that "
                    "tower's features, scored as the same direction's keys"
                )
        self.sources = torch.nn.ModuleList([first, *rest])

    def check_batch(self, global_batch: int) -> None:
        for source in self.sources:
            source.check_batch(global_batch)

    def forward(self, view: View) -> KeySet:
        parts = [source(view) for source in self.sources]
        first = parts[0]
        if first.keys.dim() != 2 or first.own_keys is not None:
            raise ValueError("a Chain joins keys shared by all queries, (N, D)")
        dtype = first.keys.dtype
        offsets = None
        if any(p.logit_offset is not None for p in parts):
            offsets = torch.cat(
                [
                    p.logit_offset
                    if p.logit_offset is not None
                    else p.keys.new_zeros(p.keys.shape[0])
                    for p in parts
                ]
            )
        return KeySet(
            torch.cat([p.keys.to(dtype) for p in parts]),
            torch.cat([p.key_ids.to(first.key_ids.dtype) for p in parts]),
            first.positive,
            offsets,
        )
