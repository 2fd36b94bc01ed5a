"""multicon's word2vec against gensim on the same corpus and settings; prints JSON.

Both read the same words (multicon's corpus reader, so tokenization is identical), use the same
dimension, window, min_count, negatives, ns_exponent, subsampling and epochs, and are scored by
the same evaluation code (multicon.eval.words; gensim's own analogy score is added as a check).
They run one after the other, so a machine shared with other jobs loads both alike. words/s is
corpus words × epochs / training seconds (gensim: ``train()``; multicon: ``Trainer.fit()``).

Each side runs in a process of its own, which reports its peak resident memory (``peak_rss_mb``,
from ``getrusage``'s ``ru_maxrss``: reading the corpus, building the vocabulary and training)
and, sampled from ``/proc/self/status`` every 0.2 s, the peaks of its two parts:
``peak_rss_anon_mb`` (anonymous memory: the heap, tensors, Python objects; what the process
really holds) and ``peak_rss_file_mb`` (file-backed pages mapped: shared libraries and memory-mapped
files, which the kernel can drop and reread); ``memory_trace`` lists ``[seconds, anon MB, file
MB]`` every 10 s.
gensim is given the corpus as an in-memory list of sentences, as before; multicon reads its
memory-mapped token cache (built by its first run, under ``--token_cache`` or $MULTICON_CACHE).

The multicon side also times a step with and without `Trainer` (forward, backward, optimizer,
after_step on the same batches) so the trainer's per-step overhead is measured, not guessed.

    multicon bench word2vec --corpus ../shared/data/enwiki17m/enwiki17m.txt.gz \\
        --max_words 2000000 --epochs 3 --out runs/bench_word2vec.json
    # two hogwild processes of one thread each, as gensim's two workers
    multicon bench word2vec ... --processes 2 --threads 1 --overhead_steps 0
"""

from __future__ import annotations

import os

# as the recipe does (multicon trains in this process): huge pages for torch's large buffers,
# set before torch's first allocation; a value given by the caller is kept and reported
THP_GIVEN = os.environ.get("THP_MEM_ALLOC_ENABLE")
os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")
# OpenMP threads that sleep, not spin, between the C kernel's steps (libgomp reads this once, when
# torch loads it; the kernel shares torch's libgomp): on a machine shared with other jobs a
# spinning thread takes the core its partner or the pair generator needs (docs/word2vec.md)
OMP_GIVEN = os.environ.get("OMP_WAIT_POLICY")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import json
import resource
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from transformers import HfArgumentParser

from multicon import TrainConfig
from multicon.bench import code_version
from multicon.eval.words import evaluate_analogies, evaluate_similarity
from multicon.optim import SGD
from multicon.recipes import word2vec as recipe
from multicon.text import Vocabulary


@dataclass
class BenchArgs:
    out: str = field(default="", metadata={"help": "Also write the JSON here."})
    batch_size: int = field(default=8192, metadata={"help": "multicon pairs per step."})
    lr: float = field(default=0.025, metadata={"help": "Initial learning rate (both)."})
    workers: int = field(default=2, metadata={"help": "gensim worker threads."})
    epochs: int = 3
    seed: int = 0
    skip_gensim: bool = False
    repeats: int = field(
        default=1,
        metadata={"help": "Rounds of gensim-then-multicon; the JSON adds each round's words/s."},
    )
    processes: int = field(
        default=1,
        metadata={"help": "multicon processes; above 1 they train one shared copy (hogwild)."},
    )
    overhead_steps: int = field(
        default=100, metadata={"help": "Steps timed with and without Trainer (0: skip)."}
    )
    kernels: str = field(
        default="",
        metadata={
            "help": "Comma-separated --kernel values (e.g. 'fused,hogbatch'), each run after "
            "gensim in every round (round r: seed + r); the JSON's 'kernels' gives every run, its "
            "load average and the best against gensim's best. Empty: --kernel alone."
        },
    )
    part: str = field(
        default="",
        metadata={"help": "Internal: run only 'gensim' or 'multicon' and write its JSON here."},
    )


def scores(vectors: torch.Tensor, vocab: Vocabulary, ev) -> dict[str, float]:
    r = evaluate_analogies(vectors, vocab, ev.analogies, restrict_vocab=ev.restrict_vocab)
    out = {"analogy": r.accuracy, "analogy_answered": r.answered, "analogy_oov": r.oov}
    for name, path in (("ws353", ev.wordsim), ("simlex999", ev.simlex)):
        out[name] = evaluate_similarity(vectors, vocab, path).spearman
    return {k: v if v is None else round(float(v), 4) for k, v in out.items()}  # None: no answer


def word2vec_config(output_dir: str, bench, **length) -> TrainConfig:
    """word2vec's optimisation: plain SGD at ``bench.lr`` decayed linearly, nothing logged."""
    return TrainConfig(
        output_dir=output_dir,
        batch_size=bench.batch_size,
        optimizer="sgd",
        lr=bench.lr,
        momentum=0.0,
        weight_decay=0.0,
        schedule="linear",
        eval_every=0,
        log_every=100,
        log_with="",
        progress_bar=False,
        **length,
    )


def run_hogwild(tmp: str, data, w2v, ev, bench: BenchArgs) -> dict:
    """The recipe under ``torchrun``: ``bench.processes`` processes, one shared copy of the
    tables (``--hogwild``), each given ``threads`` torch threads; rank 0's report."""
    config = word2vec_config(tmp, bench, epochs=bench.epochs, seed=bench.seed)
    flags = {**asdict(data), **asdict(w2v), **asdict(ev), **asdict(config), "hogwild": True}
    argv = [f"--{k}={v}" for k, v in flags.items() if not isinstance(v, list | dict)]
    command = [
        *(sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(bench.processes)),
        *("-m", "multicon.recipes.word2vec"),
        *argv,
    ]
    env = {**os.environ, "ACCELERATE_USE_CPU": "true"}
    subprocess.run(command, check=True, env=env, stdout=subprocess.DEVNULL)
    figures = json.loads((Path(tmp) / "report.json").read_text())
    keep = ("command", "corpus", "word2vec", "hub_commit")
    return {"processes": bench.processes, **{k: v for k, v in figures.items() if k not in keep}}


def run_gensim(data, w2v, ev, bench: BenchArgs) -> dict:
    from gensim.models import Word2Vec as GensimWord2Vec

    sentences = list(recipe.load_corpus(data))
    words = sum(len(s) for s in sentences)
    model = GensimWord2Vec(
        sg=1,
        vector_size=w2v.dim,
        window=w2v.window,
        min_count=data.min_count,
        negative=w2v.negative,
        ns_exponent=w2v.ns_exponent,
        sample=w2v.sample,
        alpha=bench.lr,
        workers=bench.workers,
        epochs=bench.epochs,
        seed=bench.seed,
    )
    model.build_vocab(sentences)
    start = time.perf_counter()
    model.train(sentences, total_examples=len(sentences), epochs=bench.epochs)
    seconds = time.perf_counter() - start
    kv = model.wv
    vocab = Vocabulary(list(kv.index_to_key), [kv.get_vecattr(w, "count") for w in kv.index_to_key])
    own, _ = kv.evaluate_word_analogies(ev.analogies, restrict_vocab=ev.restrict_vocab)
    return {
        "train_seconds": round(seconds, 2),
        "words_per_second": round(words * bench.epochs / seconds),
        "vocab_size": len(vocab),
        **scores(torch.from_numpy(kv.vectors), vocab, ev),
        "analogy_by_gensim": round(float(own), 4),
        "peak_rss_mb": peak_rss_mb(),
    }


def step_seconds(data, w2v_args, bench: BenchArgs) -> dict[str, float]:
    """Seconds per step of the same model, batches and optimizer, with and without `Trainer`.

    Each is the time difference between runs of ``n`` and ``2n`` steps divided by ``n`` (fixed
    costs such as building the accelerator and the final checkpoint cancel out); the two kinds of
    run alternate, twice, so load from other jobs hits both alike. The minimum of each is kept.
    """
    from multicon import methods
    from multicon.pairs.context import ContextPairs
    from multicon.steps import FusedSkipGram
    from multicon.text import Word2Vec
    from multicon.train import Trainer

    vocab, encoded = recipe.load_encoded(data)
    pairs = ContextPairs(encoded, vocab.counts, window=w2v_args.window, sample=w2v_args.sample)
    n = min(bench.overhead_steps, pairs.num_batches(bench.batch_size) // 2)
    kernel = recipe.resolve_kernel(w2v_args.kernel, w2v_args)

    def model():
        """(what the trainer trains, the step that trains it)"""
        w2v = Word2Vec.from_vocab(vocab, w2v_args.dim)
        if kernel == "fused":
            step = FusedSkipGram(w2v, negative=w2v_args.negative, ns_exponent=w2v_args.ns_exponent)
            return w2v, step
        return methods.sgns(
            w2v,
            w2v_args.negative,
            w2v_args.ns_exponent,
            shared_negatives=w2v_args.shared_negatives,
            noise_group=(w2v_args.noise_group or None) if w2v_args.shared_negatives else None,
        ), None

    def bare(steps: int) -> float:
        m, fused = model()
        opt = SGD(m.parameters(), lr=bench.lr, momentum=0.0, row_clip=w2v_args.row_clip)
        batches = pairs.batches(bench.batch_size, epoch=0, device="cpu")
        start = time.perf_counter()
        for _, batch in zip(range(steps), batches, strict=False):
            if fused is not None:
                fused.sgd_step(batch, bench.lr)
                continue
            out = m(batch)
            out.loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            m.after_step(out, progress=0.0)
        return time.perf_counter() - start

    def trainer(steps: int) -> float:
        with tempfile.TemporaryDirectory() as tmp:
            config = word2vec_config(tmp, bench, max_steps=steps)
            m, fused = model()
            optimizer = None
            if w2v_args.row_clip:

                def optimizer(module):
                    clip = w2v_args.row_clip
                    return SGD(module.parameters(), lr=bench.lr, momentum=0.0, row_clip=clip)

            t = Trainer(m, pairs, config, step=fused, optimizer=optimizer)
            start = time.perf_counter()
            t.fit()
            return time.perf_counter() - start

    runs: dict[str, list[float]] = {"bare_engine": [], "trainer": []}
    for _ in range(2):
        for name, fn in (("bare_engine", bare), ("trainer", trainer)):
            runs[name].append((fn(2 * n) - fn(n)) / n)
    return {f"seconds_per_step_{k}": round(min(v), 5) for k, v in runs.items()}


def run_multicon(data, w2v_args, ev, bench: BenchArgs) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        if bench.processes > 1:
            figures = run_hogwild(tmp, data, w2v_args, ev, bench)
            # the largest of the training processes (ru_maxrss of children is their maximum)
            figures["peak_rss_mb"] = peak_rss_mb(resource.RUSAGE_CHILDREN)
            return figures
        config = word2vec_config(tmp, bench, epochs=bench.epochs, seed=bench.seed)
        figures = recipe.train(data, w2v_args, ev, config)
        figures.pop("main_process")
        return {**figures, "peak_rss_mb": peak_rss_mb()}


def peak_rss_mb(who: int = resource.RUSAGE_SELF) -> float:
    """Peak resident memory so far, in MiB (Linux reports ``ru_maxrss`` in KiB)."""
    return round(resource.getrusage(who).ru_maxrss / 1024, 1)


class MemorySampler:
    """Peaks of this process's anonymous and file-backed resident memory, sampled in a thread.

    ``ru_maxrss`` is the peak of their sum; a memory-mapped file's pages count in it while they
    are mapped, though the kernel can drop them at any time, so the anonymous part is the figure
    that says what the process holds. (Linux only: elsewhere the peaks stay None.)
    """

    def __init__(self, every: float = 0.2, trace_every: float = 10.0) -> None:
        self.every, self.trace_every = every, trace_every
        self.peak_anon: float | None = None
        self.peak_file: float | None = None
        self.trace: list[list[float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    @staticmethod
    def read() -> tuple[float, float] | None:
        """(RssAnon, RssFile) in MiB now, or None where /proc/self/status lacks them."""
        try:
            fields = dict(line.split(":", 1) for line in open("/proc/self/status"))
            return tuple(int(fields[k].split()[0]) / 1024 for k in ("RssAnon", "RssFile"))
        except (OSError, KeyError, ValueError):
            return None

    def _run(self) -> None:
        start = next_trace = time.perf_counter()
        while True:
            now = self.read()
            if now is None:
                return
            anon, file = now
            self.peak_anon = max(self.peak_anon or 0.0, anon)
            self.peak_file = max(self.peak_file or 0.0, file)
            t = time.perf_counter()
            if t >= next_trace:
                self.trace.append([round(t - start), round(anon), round(file)])
                next_trace += self.trace_every
            if self._stop.wait(self.every):
                return

    def __enter__(self) -> MemorySampler:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def figures(self) -> dict:
        return {
            "peak_rss_anon_mb": None if self.peak_anon is None else round(self.peak_anon, 1),
            "peak_rss_file_mb": None if self.peak_file is None else round(self.peak_file, 1),
            "memory_trace": self.trace,
        }


def run_part(side: str, argv: list[str]) -> dict:
    """One side (``gensim`` or ``multicon``) in a fresh process: its peak memory is its own."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / f"{side}.json"
        command = [sys.executable, "-m", "multicon.bench.word2vec", *argv]
        subprocess.run([*command, "--part", side, "--out", str(out)], check=True)
        return json.loads(out.read_text())


def repeat_summary(rounds: list[tuple[dict | None, dict]]) -> dict:
    """words/s of every round, the median ratio, and each side's best (its least-disturbed run)."""
    multicon = [m["words_per_second"] for _, m in rounds]
    summary: dict = {"multicon_words_per_second": multicon}
    if rounds[0][0] is not None:
        gensim = [g["words_per_second"] for g, _ in rounds]
        ratios = sorted(m / g for m, g in zip(multicon, gensim, strict=True))
        summary.update(
            gensim_words_per_second=gensim,
            ratios=[round(r, 3) for r in ratios],
            median_ratio=round(ratios[len(ratios) // 2], 3),
            best_ratio=round(max(multicon) / max(gensim), 3),
        )
    return summary


def build_parser() -> HfArgumentParser:
    """The benchmark's flags: the recipe's corpus, word2vec and evaluation flags, and its own."""
    parser = HfArgumentParser((recipe.CorpusArgs, recipe.Word2VecArgs, recipe.EvalArgs, BenchArgs))
    parser.set_defaults(tokenizer="whitespace", threads=1)
    return parser


def main(argv: list[str] | None = None, prog: str = "multicon bench word2vec") -> dict:
    """Run, print (and with ``--out`` write) the JSON report; ``prog`` starts its ``command``."""
    argv = sys.argv[1:] if argv is None else list(argv)
    data, w2v_args, ev, bench = build_parser().parse_args_into_dataclasses(args=argv)
    if bench.part:  # a child of the process below: one side, its JSON to --out
        if bench.part not in ("gensim", "multicon"):
            raise ValueError(f"--part must be 'gensim' or 'multicon', got {bench.part!r}")
        run = run_gensim if bench.part == "gensim" else run_multicon
        with MemorySampler() as memory:
            figures = run(data, w2v_args, ev, bench)
        if bench.processes == 1 or bench.part == "gensim":  # hogwild trains in child processes
            figures.update(memory.figures())
        Path(bench.out).write_text(json.dumps(figures))
        return figures
    report: dict = {
        "command": " ".join(
            [*([f"THP_MEM_ALLOC_ENABLE={THP_GIVEN}"] if THP_GIVEN is not None else [])]
            + [*([f"OMP_WAIT_POLICY={OMP_GIVEN}"] if OMP_GIVEN is not None else []), "python"]
            + sys.argv
        ),
        "code": code_version(),
        "corpus": asdict(data),
        "settings": {**asdict(w2v_args), **asdict(bench)},
        "torch_threads": w2v_args.threads or torch.get_num_threads(),
        "omp_wait_policy": os.environ["OMP_WAIT_POLICY"],
    }
    child_argv = _without_out(argv)
    if bench.kernels:  # gensim and every kernel side by side, `repeats` rounds
        report.update(compare_kernels(bench, child_argv))
        return _write(report, bench)
    rounds = []  # gensim then multicon, `repeats` times: machine drift hits both alike
    for _ in range(bench.repeats):
        gensim = None if bench.skip_gensim else run_part("gensim", child_argv)
        rounds.append((gensim, run_part("multicon", child_argv)))
    gensim, figures = rounds[0]
    if gensim is not None:
        report["gensim"] = gensim
    if bench.repeats > 1:
        report["repeats"] = repeat_summary(rounds)
    report["multicon"] = {
        **figures,
        "seconds_per_step_in_run": round(figures["train_seconds"] / figures["steps"], 5),
        **(step_seconds(data, w2v_args, bench) if bench.overhead_steps else {}),
    }
    return _write(report, bench)


def _write(report: dict, bench: BenchArgs) -> dict:
    text = json.dumps(report, indent=2)
    print(text)
    if bench.out:
        Path(bench.out).parent.mkdir(parents=True, exist_ok=True)
        Path(bench.out).write_text(text)
    return report


SCORES = ("train_seconds", "words_per_second", "analogy", "ws353", "simlex999", "final_loss")


def compare_kernels(bench: BenchArgs, argv: list[str]) -> dict:
    """gensim, then each of ``bench.kernels``, ``bench.repeats`` times; every run's figures and
    the 1-minute load average before it (the machine may be shared), each side's best words/s
    and the best-of-runs ratio to gensim's best."""
    kernels = [k.strip() for k in bench.kernels.split(",") if k.strip()]
    sides = ([] if bench.skip_gensim else ["gensim"]) + kernels
    runs: dict[str, list[dict]] = {side: [] for side in sides}
    for r in range(bench.repeats):
        for side in sides:
            load = round(os.getloadavg()[0], 2)
            part = ["--seed", str(bench.seed + r)]
            part += ["--kernel", side] if side != "gensim" else []
            figures = run_part("gensim" if side == "gensim" else "multicon", [*argv, *part])
            runs[side].append({"seed": bench.seed + r, "load_average": load})
            runs[side][-1].update({k: figures.get(k) for k in SCORES})
    best = {side: max(r["words_per_second"] for r in runs[side]) for side in sides}
    out: dict = {"runs": runs, "best_words_per_second": best}
    if "gensim" in best:
        out["best_ratio_to_gensim"] = {k: round(best[k] / best["gensim"], 3) for k in kernels}
    out["mean_scores"] = {
        side: {
            k: round(sum(r[k] for r in runs[side]) / len(runs[side]), 4)
            for k in ("analogy", "ws353", "simlex999")
            if all(r[k] is not None for r in runs[side])
        }
        for side in sides
    }
    return {"kernels": out}


def _without_out(argv: list[str]) -> list[str]:
    """``argv`` less its ``--out`` flag (a child writes its own JSON elsewhere)."""
    kept, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--out":
            skip = True
        elif not arg.startswith("--out="):
            kept.append(arg)
    return kept


if __name__ == "__main__":
    main()
