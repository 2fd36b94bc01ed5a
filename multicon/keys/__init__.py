"""Where a direction's keys come from, one source per file.

========================  ==============================================================
`BatchKeys`               this step's keys from an encoder, gathered with gradient
`MomentumEncoder`         an EMA copy of an encoder (use it in `BatchKeys` / as a fill)
`KeyQueue`                a FIFO queue of past keys, filled from a `BatchKeys`
`PositiveAndQueue`        MoCo v2: each query's own key, then the queue
`FeatureQueue`            a locked tower's queued features, re-projected each step
`NoiseKeys`               keys drawn from a noise distribution (word2vec)
`LogQCorrection`          reweights frequency-biased keys towards a target distribution
`Chain`, `OtherQueries`   several sources as one set (NT-Xent: batch keys, then queries)
========================  ==============================================================

Every source is a `KeySource`: ``forward(view) -> KeySet``, and `after_step` for what it
updates once the optimizer has stepped.
"""

from multicon.keys.base import AfterStep, KeySource, StepInputs, View, output_dim
from multicon.keys.batch import BatchKeys, batch_keyset
from multicon.keys.chain import Chain, OtherQueries
from multicon.keys.feature_queue import FeatureQueue
from multicon.keys.logq import LogQCorrection
from multicon.keys.momentum import MomentumEncoder, cosine_momentum, shared_with_copy
from multicon.keys.noise import NoiseKeys, noise_weights
from multicon.keys.queue import KeyQueue, PositiveAndQueue, RingBuffer

__all__ = [
    "AfterStep",
    "BatchKeys",
    "Chain",
    "FeatureQueue",
    "KeyQueue",
    "KeySource",
    "LogQCorrection",
    "MomentumEncoder",
    "NoiseKeys",
    "OtherQueries",
    "PositiveAndQueue",
    "RingBuffer",
    "StepInputs",
    "View",
    "batch_keyset",
    "cosine_momentum",
    "noise_weights",
    "output_dim",
    "shared_with_copy",
]
