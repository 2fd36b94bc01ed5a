"""The fused skip-gram step as a Triton kernel: `FusedSkipGram` on a GPU.

The same per-pair update as `multicon/csrc/sgns.c`, in one kernel launch a step. Each program
walks ``pairs_per_program`` consecutive pairs, as a CPU thread walks its slice; programs run
concurrently and share the tables without locks, as word2vec's threads do. A GPU runs thousands
of programs at once, so many of them update one frequent word's row at the same moment. Plain
stores (CPU hogwild) would then keep one of those updates and lose the rest: in a simulation of
that on the CPU (262,144 pairs a step, 2M words of enwiki17m, every program's j-th pair read and
written at once) the analogy score fell from 3.6 % to 1.2 % with 1,024 programs and to 0 with
8,192. The kernel adds its updates atomically instead, so concurrent updates sum as in a batch
step of as many pairs: 3.6-3.8 % in the same simulation (the C kernel: 3.7 %; gensim 3.1 %).
``pairs_per_program`` sets how many programs a step has, and so how many pairs are summed at
once; 32 at 262,144 pairs a step is 8,192 of them.

Noise words are drawn in the kernel from the alias table with Triton's counter-based
generator (``tl.rand``), seeded per step: no extra launches, no host synchronisation. Ids
outside the vocabulary are not looked up: such a pair makes the step's loss NaN, which the
trainer reports (a check on the host would synchronise every step).

Needs ``triton``; the tests run the kernel on the CPU with ``TRITON_INTERPRET=1``.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl


@triton.jit
def _draw(prob_ptr, alias_ptr, vocab, seed, offset):
    """A noise word from the alias table: a uniform column, then a coin against its
    probability (two counter-based draws, so any program can draw any offset)."""
    u = tl.rand(seed, 2 * offset)
    coin = tl.rand(seed, 2 * offset + 1)
    column = tl.minimum((u * vocab).to(tl.int64), vocab - 1)
    return tl.where(coin < tl.load(prob_ptr + column), column, tl.load(alias_ptr + column))


@triton.jit
def _sample_kernel(prob_ptr, alias_ptr, out_ptr, count, vocab, seed, BLOCK: tl.constexpr):
    offset = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    # every column drawn lies in the table, so the unmasked loads of _draw are safe
    tl.store(out_ptr + offset, _draw(prob_ptr, alias_ptr, vocab, seed, offset), mask=offset < count)


@triton.jit
def _sgns_kernel(
    input_ptr,
    output_ptr,
    centre_ptr,
    context_ptr,
    noise_ptr,
    prob_ptr,
    alias_ptr,
    loss_ptr,
    skipped_ptr,
    n,
    vocab,
    lr,
    seed,
    DIM: tl.constexpr,
    BLOCK: tl.constexpr,
    NEGATIVE: tl.constexpr,
    PAIRS: tl.constexpr,
    DRAW: tl.constexpr,
):
    program = tl.program_id(0)
    d = tl.arange(0, BLOCK)
    inside = d < DIM
    total = 0.0
    skipped = 0
    for j in range(PAIRS):
        i = program * PAIRS + j
        if i < n:
            c = tl.load(centre_ptr + i)
            positive = tl.load(context_ptr + i)
            if (c >= 0) & (c < vocab) & (positive >= 0) & (positive < vocab):
                q = tl.load(input_ptr + c * DIM + d, mask=inside, other=0.0)
                k = tl.load(output_ptr + positive * DIM + d, mask=inside, other=0.0)
                p = tl.sigmoid(tl.sum(q * k, axis=0))
                g = (1.0 - p) * lr
                grad = g * k
                tl.atomic_add(output_ptr + positive * DIM + d, g * q, mask=inside)
                likelihood = p
                for t in range(NEGATIVE):
                    if DRAW:
                        w = _draw(prob_ptr, alias_ptr, vocab, seed, i * NEGATIVE + t)
                    else:
                        w = tl.load(noise_ptr + i * NEGATIVE + t)
                    if (w != positive) & (w >= 0) & (w < vocab):
                        k = tl.load(output_ptr + w * DIM + d, mask=inside, other=0.0)
                        p = tl.sigmoid(tl.sum(q * k, axis=0))
                        g = -p * lr
                        grad += g * k
                        tl.atomic_add(output_ptr + w * DIM + d, g * q, mask=inside)
                        likelihood *= 1.0 - p
                tl.atomic_add(input_ptr + c * DIM + d, grad, mask=inside)
                total += -tl.log(tl.maximum(likelihood, 1e-30))
            else:
                skipped += 1
    tl.store(loss_ptr + program, total)
    tl.store(skipped_ptr + program, skipped)


def sgns_step_triton(
    inp: torch.Tensor,
    out: torch.Tensor,
    centre: torch.Tensor,
    context: torch.Tensor,
    noise: torch.Tensor | None,
    negative: int,
    prob: torch.Tensor,
    alias: torch.Tensor,
    lr: float,
    seed: int,
    pairs_per_program: int = 32,
) -> torch.Tensor:
    """Apply the pairs' updates to ``inp`` / ``out`` in place; returns the summed loss (0-d,
    on the tables' device, not synchronised)."""
    n, dim = len(centre), inp.shape[1]
    programs = max(1, triton.cdiv(n, pairs_per_program))
    loss = torch.empty(programs, dtype=torch.float32, device=inp.device)
    skipped = torch.empty(programs, dtype=torch.int32, device=inp.device)
    _sgns_kernel[(programs,)](
        inp,
        out,
        centre,
        context,
        centre if noise is None else noise,  # not read when drawing
        prob,
        alias,
        loss,
        skipped,
        n,
        len(prob),
        lr,
        seed % 2**31,  # tl.rand's seed is 32-bit
        DIM=dim,
        BLOCK=triton.next_power_of_2(dim),
        NEGATIVE=negative,
        PAIRS=pairs_per_program,
        DRAW=noise is None,
        num_warps=1,
    )
    # a pair with an id outside the vocabulary makes the loss NaN, on the device (no sync)
    return loss.sum().masked_fill(skipped.sum() > 0, float("nan"))


def sample_noise_triton(
    prob: torch.Tensor, alias: torch.Tensor, count: int, seed: int
) -> torch.Tensor:
    """``count`` draws from the alias table, as the step draws them."""
    out = torch.empty(count, dtype=torch.int64, device=prob.device)
    block = 1024
    _sample_kernel[(max(1, triton.cdiv(count, block)),)](
        prob, alias, out, count, len(prob), seed % 2**31, BLOCK=block
    )
    return out
