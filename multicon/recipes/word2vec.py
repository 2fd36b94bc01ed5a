"""word2vec skip-gram with negative sampling, through the shared contrastive engine.

On a CPU the step is word2vec's own per-pair loop in C (`FusedSkipGram`, `--kernel fused`,
chosen by `--kernel auto` when a C compiler is found; `--kernel hogbatch` shares each window's
noise words, `HogBatchSkipGram`); elsewhere, or with `--kernel torch`, the engine's batched
tensor step.

Any corpus: a text8-style single-line file, a line-per-sentence file (plain or .gz), or a Hub
dataset's text column (when online). Prints analogy / WS-353 / SimLex-999 scores, writes the model
in the Hub format (model.safetensors + config.json + vocab.txt) and the vectors in the word2vec C
binary format.

    python recipes/word2vec_text8.py --corpus ../shared/data/enwiki17m/enwiki17m.txt.gz \\
        --max_words 2000000 --output_dir runs/w2v --epochs 3
    python recipes/word2vec_text8.py --corpus text8.txt --kernel torch   # the engine's batched step
    ACCELERATE_USE_CPU=true torchrun --nproc_per_node 2 recipes/word2vec_text8.py --corpus ...
"""

from __future__ import annotations

import os

# Read by PyTorch at its first allocation: set here for `python -m multicon.recipes.word2vec`
# and recipes/word2vec_text8.py (`import multicon` loads no torch); the `multicon` command too.
# See "Huge pages" in docs/word2vec.md.
os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")

import json
import sys
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

import torch
from huggingface_hub import EvalResult
from transformers import HfArgumentParser

from multicon import TrainConfig, Trainer, methods, native
from multicon.data.corpus import (
    EncodedCorpus,
    TextCorpus,
    lowercase_words,
    sentencepiece_tokenizer,
    transformers_tokenizer,
    whitespace_words,
)
from multicon.data.token_cache import cached_encoding, dataset_identity, file_identity
from multicon.eval.run_figures import pick_words, word_figures
from multicon.eval.words import evaluate_analogies, evaluate_similarity
from multicon.hub import HubArgs, save_run
from multicon.optim import build_optimizer
from multicon.pairs.context import ContextPairs
from multicon.run_folder import check_output_dir
from multicon.steps import AutogradStep, FusedSkipGram, GradCacheArgs, HogBatchSkipGram, step_for
from multicon.text import Vocabulary, Word2Vec

# The standard test sets beside a checkout of the repo (../shared/data), or where
# $MULTICON_WORD_EVAL points.
WORD_EVAL = Path(
    os.environ.get(
        "MULTICON_WORD_EVAL",
        Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "word-eval",
    )
)


@dataclass
class CorpusArgs:
    corpus: str = field(
        default="text8",
        metadata={
            "help": "A text file (.gz ok); a .jsonl, .json, .parquet or .csv file, streamed with "
            "`datasets` (its --text_column); or a Hub dataset name (streamed)."
        },
    )
    text_column: str = field(default="text", metadata={"help": "Column of a Hub dataset."})
    tokenizer: str = field(
        default="lowercase",
        metadata={"help": "'lowercase', 'whitespace', a .model sentencepiece file or a HF name."},
    )
    max_words: int = field(default=0, metadata={"help": "Read only this many words (0: all)."})
    min_count: int = 5
    max_vocab: int = field(default=0, metadata={"help": "Keep at most this many words (0: all)."})
    token_cache: str = field(
        default="",
        metadata={
            "help": "Folder of the corpus's token ids (memory-mapped) and vocabulary, built on "
            "the first run and reused; refused if built from another corpus, tokenizer or "
            "vocabulary. Default: a folder named by those under $MULTICON_CACHE "
            "(~/.cache/multicon)."
        },
    )


@dataclass
class Word2VecArgs:
    dim: int = 100
    window: int = 5
    negative: int = field(
        default=5, metadata={"help": "Noise words per pair (word2vec -negative)."}
    )
    shared_negatives: int = field(
        default=16,
        metadata={"help": "K noise words per draw, weighted negative/K (0: `negative` per pair)."},
    )
    noise_group: int = field(
        default=256,
        metadata={"help": "Pairs sharing one draw of shared_negatives noise words (0: batch)."},
    )
    ns_exponent: float = 0.75
    kernel: Literal["auto", "fused", "hogbatch", "torch"] = field(
        default="auto",
        metadata={
            "help": "'fused': word2vec's per-pair updates in one loop (C on a CPU, Triton on a "
            "GPU; `negative` noise words per pair); 'hogbatch': a C loop whose `negative` noise "
            "words are shared by a centre's window (CPU; HogBatch); 'torch': batched tensor ops "
            "through the "
            "shared loss (any device; shared_negatives, noise_group and row_clip apply); 'auto': "
            "fused on a CPU when a C compiler is found, else torch."
        },
    )
    pairs_per_program: int = field(
        default=32,
        metadata={"help": "Fused kernel on a GPU: pairs each Triton program walks in order."},
    )
    sample: float = field(default=1e-4, metadata={"help": "Subsampling threshold (0: off)."})
    shuffle_blocks: int = field(
        default=16,
        metadata={
            "help": "Blocks of 65,536 corpus words whose centres are shuffled together: a wider "
            "shuffle, holding 36 bytes a word of a group (2.4 MB a block) at once."
        },
    )
    threads: int = field(default=0, metadata={"help": "torch CPU threads (0: torch's default)."})
    sparse: bool = field(
        default=True,
        metadata={"help": "Sparse table gradients (with several processes only under --hogwild)."},
    )
    hogwild: bool = field(
        default=False,
        metadata={
            "help": "CPU processes on one machine update one shared copy of the tables without "
            "gradient sync (word2vec's parallelism)."
        },
    )
    row_clip: float = field(
        default=0.0,
        metadata={
            "help": "torch kernel, sgd: cap the step of each table row (a word) at this multiple "
            "of its norm (large batches; 0: off)."
        },
    )

    def __post_init__(self) -> None:
        if self.row_clip < 0:
            raise ValueError(f"--row_clip must be >= 0, got {self.row_clip}")
        if self.shuffle_blocks < 1:
            raise ValueError(f"--shuffle_blocks must be >= 1, got {self.shuffle_blocks}")


@dataclass
class EvalArgs:
    """Evaluation files ('' turns one off). A file named on the command line must exist; a
    default one that is absent (no shared data beside the checkout) is skipped with a warning."""

    analogies: str = str(WORD_EVAL / "questions-words.txt")
    wordsim: str = str(WORD_EVAL / "wordsim353.tsv")
    simlex: str = str(WORD_EVAL / "simlex999.txt")
    restrict_vocab: int = 30_000
    show_words: list[str] = field(
        default_factory=list,
        metadata={"help": "Words whose nearest words word_neighbours.png tables (default: 8 "
                  "words of frequency ranks 20-1000)."},
    )  # fmt: skip

    def __post_init__(self) -> None:
        if self.restrict_vocab < 1:
            raise ValueError(f"--restrict_vocab must be at least 1, got {self.restrict_vocab}")
        defaults = EvalArgs.__dataclass_fields__
        for flag in ("analogies", "wordsim", "simlex"):
            path = getattr(self, flag)
            if not path or Path(path).is_file():
                continue
            if path != defaults[flag].default:
                raise FileNotFoundError(
                    f"--{flag}: no file {path} (pass --{flag} '' to skip this evaluation)"
                )
            warnings.warn(f"--{flag}: no file {path}; that evaluation is skipped", stacklevel=2)
            setattr(self, flag, "")


def tokenizer_for(name: str):
    if name == "lowercase":
        return lowercase_words
    if name == "whitespace":
        return whitespace_words
    if name.endswith(".model"):
        return sentencepiece_tokenizer(name)
    return transformers_tokenizer(name)


def load_encoded(args: CorpusArgs, progress: bool = False) -> tuple[Vocabulary, EncodedCorpus]:
    """The vocabulary and token ids of the corpus, from its token cache (built on first use,
    with tqdm bars when ``progress``)."""
    corpus = load_corpus(args)
    if Path(args.corpus).is_file():
        identity = file_identity(args.corpus)
        if _dataset_format(args.corpus):
            identity["column"] = args.text_column
    else:
        identity = {**dataset_identity(corpus.source, args.corpus), "column": args.text_column}
    tokenizer = args.tokenizer
    if Path(tokenizer).exists():  # a sentencepiece file or a local folder: its path and date
        tokenizer = {"path": str(Path(tokenizer).resolve()), "mtime_ns": _mtime(tokenizer)}
    key = {
        "corpus": identity,
        "tokenizer": tokenizer,
        "max_words": args.max_words,
        "max_sentence_words": corpus.max_sentence_words,
    }
    return cached_encoding(
        corpus,
        key,
        args.token_cache or None,
        min_count=args.min_count,
        max_size=args.max_vocab or None,
        progress=progress,
    )


def _mtime(path: str) -> int:
    return max(p.stat().st_mtime_ns for p in [Path(path), *Path(path).rglob("*")])


def load_corpus(args: CorpusArgs) -> TextCorpus:
    kwargs = dict(tokenizer=tokenizer_for(args.tokenizer), max_words=args.max_words or None)
    builder = _dataset_format(args.corpus)
    if Path(args.corpus).is_file() and builder is None:
        return TextCorpus.from_file(args.corpus, **kwargs)
    from datasets import load_dataset

    if builder:  # a local table, streamed row by row as a Hub dataset is
        dataset = load_dataset(builder, data_files=args.corpus, split="train", streaming=True)
    else:
        dataset = load_dataset(args.corpus, split="train", streaming=True)
    return TextCorpus.from_dataset(dataset, args.text_column, **kwargs)


def _dataset_format(corpus: str) -> str | None:
    """The `datasets` builder of a local table file (``.jsonl`` -> json, ...), else None."""
    if not Path(corpus).is_file():
        return None
    return {".jsonl": "json", ".json": "json", ".parquet": "parquet", ".csv": "csv"}.get(
        Path(corpus).suffix
    )


def word_scores(model: Word2Vec, args: EvalArgs) -> dict[str, float | int | None]:
    """Analogy accuracy and similarity ρ on the evaluation files given, with how many questions
    and pairs each was measured on; a score with nothing to measure is None."""
    scores: dict[str, float | int | None] = {}
    vectors, vocab = model.vectors, model.vocab
    if args.analogies:
        r = evaluate_analogies(vectors, vocab, args.analogies, restrict_vocab=args.restrict_vocab)
        scores.update(analogy=r.accuracy, analogy_answered=r.answered, analogy_oov=r.oov)
    for name, path in (("ws353", args.wordsim), ("simlex999", args.simlex)):
        if path:
            s = evaluate_similarity(vectors, vocab, path)
            scores.update({name: s.spearman, f"{name}_pairs": s.pairs, f"{name}_oov": s.oov})
    return {k: _rounded(v) for k, v in scores.items()}


def _rounded(value: float | int | None) -> float | int | None:
    return round(value, 4) if isinstance(value, float) else value


def analogy_sections(model: Word2Vec, args: EvalArgs) -> dict[str, float | None]:
    """Accuracy per section of the analogy file (None: no question of it answered)."""
    if not args.analogies:
        return {}
    r = evaluate_analogies(
        model.vectors, model.vocab, args.analogies, restrict_vocab=args.restrict_vocab
    )
    return {name: _rounded(acc) for name, acc in r.section_accuracy().items()}


# The standard evaluation files by name: the card files each score under its own dataset.
EVAL_DATASETS = {
    "questions-words.txt": ("google-analogy", "Google analogy test set (questions-words)"),
    "wordsim353.tsv": ("wordsim353", "WordSim-353"),
    "simlex999.txt": ("simlex999", "SimLex-999"),
}


def eval_results(scores: dict[str, float | int | None], args: EvalArgs) -> list[EvalResult]:
    """The model card's results: analogy accuracy and similarity ρ, each under the evaluation
    file it was measured on (never the training corpus), with how much of it was covered."""
    results = []
    for key, path, task, metric in (
        ("analogy", args.analogies, ("word-analogy", "Word analogy (3CosAdd)"), "accuracy"),
        ("ws353", args.wordsim, ("word-similarity", "Word similarity"), "spearman"),
        ("simlex999", args.simlex, ("word-similarity", "Word similarity"), "spearman"),
    ):
        if not path or scores.get(key) is None:
            continue
        name = Path(path).name
        dataset_type, dataset_name = EVAL_DATASETS.get(name, (Path(path).stem, name))
        if key == "analogy":
            covered = (
                f"analogy accuracy, {scores['analogy_answered']} questions answered "
                f"({scores['analogy_oov']} out of vocabulary; top {args.restrict_vocab} words)"
            )
        else:
            covered = f"Spearman rho, {scores[f'{key}_pairs']} pairs ({scores[f'{key}_oov']} OOV)"
        results.append(
            EvalResult(
                task_type=task[0],
                task_name=task[1],
                dataset_type=dataset_type,
                dataset_name=dataset_name,
                metric_type=metric,
                metric_name=covered,
                metric_value=float(scores[key]),
            )
        )
    return results


def loss_description(kernel: str, args: Word2VecArgs) -> str:
    """The card's statement of what trained the vectors: the sigmoid (SGNS) loss, and how."""
    sgns = (
        f"Word vectors ({args.dim} dimensions) trained by skip-gram with negative sampling "
        f"(SGNS, word2vec): the sigmoid (logistic) loss of each (word, context word) pair within "
        f"a window of {args.window}, against noise words drawn from the unigram distribution "
        f"to the power {args.ns_exponent}"
    )
    if kernel == "fused":
        return (
            f"{sgns}, {args.negative} per pair, with word2vec's own per-pair SGD updates (the "
            "fused kernel: C on a CPU, Triton on a GPU). The vectors are the input table."
        )
    if args.shared_negatives:
        noise = (
            f"{args.shared_negatives} noise words shared by each group of "
            f"{args.noise_group or 'the batch'} pairs, weighted {args.negative}/"
            f"{args.shared_negatives}"
        )
    else:
        noise = f"{args.negative} per pair"
    return (
        f"{sgns}: {noise}, computed in batches by the engine's tensor step (the torch kernel). "
        "The vectors are the input table."
    )


def resolve_kernel(kernel: str, args: Word2VecArgs) -> str:
    """'fused' or 'torch' for ``kernel``: 'auto' takes the fused loop for a CPU run it can serve
    (one process, or hogwild; no row_clip) when a C compiler is found."""
    if kernel != "auto":
        return kernel
    forced_cpu = os.environ.get("ACCELERATE_USE_CPU", "").lower() in ("1", "true", "yes")
    on_cpu = forced_cpu or not torch.cuda.is_available()
    single = int(os.environ.get("WORLD_SIZE", "1")) == 1
    if not on_cpu or not (single or args.hogwild) or args.row_clip:
        return "torch"
    try:
        native.load("sgns")
    except native.NativeUnavailableError as e:
        warnings.warn(f"{e}; training with the slower torch kernel", stacklevel=2)
        return "torch"
    return "fused"


def warn_kernel_settings(kernel: str, w2v_args: Word2VecArgs, config: TrainConfig) -> None:
    """Warn of settings the fused kernel does not use, and where the torch kernel's summed
    batch steps were measured to diverge."""
    if kernel in ("fused", "hogbatch"):
        defaults = Word2VecArgs()
        unused = [
            f"--{name} {getattr(w2v_args, name)}"
            for name in ("shared_negatives", "noise_group")
            if getattr(w2v_args, name) != getattr(defaults, name)
        ]
        if unused:
            warnings.warn(
                f"{' and '.join(unused)} apply to the torch kernel; the fused kernel draws "
                f"--negative {w2v_args.negative} noise words per pair (--kernel torch uses them)",
                stacklevel=3,
            )
        return
    if w2v_args.shared_negatives:
        group = w2v_args.noise_group or config.batch_size
        load = group * w2v_args.negative / w2v_args.shared_negatives
        if load > 1000:  # measured: 640 learned, 1280 diverged (docs/word2vec.md)
            warnings.warn(
                f"each shared noise word takes the gradient of {load:.0f} pairs per step "
                f"(noise_group {group} x negative {w2v_args.negative} / "
                f"shared_negatives {w2v_args.shared_negatives}); above ~1000 training has "
                "diverged: raise shared_negatives or lower noise_group",
                stacklevel=2,
            )
    # measured on enwiki17m (docs/word2vec.md): plain SGD diverged from 65,536 pairs a step with
    # shared noise words, from 32,768 with word2vec's exact objective
    diverged = 65536 if w2v_args.shared_negatives else 32768
    if config.batch_size >= diverged and not w2v_args.row_clip:
        warnings.warn(
            f"batches of {config.batch_size} pairs sum thousands of gradients into a frequent "
            f"word's row at once; from {diverged:,} pairs plain SGD diverged on enwiki17m with "
            "these noise settings: pass --row_clip 1",
            stacklevel=2,
        )


def train(
    data: CorpusArgs,
    w2v_args: Word2VecArgs,
    eval_args: EvalArgs,
    config: TrainConfig,
    grad_cache_chunk: int = 0,
) -> dict:
    """Build the vocabulary and pairs, train, evaluate; returns figures and timings."""
    if w2v_args.threads:
        torch.set_num_threads(w2v_args.threads)
    # trained scores saturate the sigmoid: its tails and their products become denormal floats,
    # which x86 CPUs compute ~100x slower (measured: 64 noise words, 27.8 s -> 17.4 s); flushing
    # them to zero changed no figure
    torch.set_flush_denormal(True)
    kernel = resolve_kernel(w2v_args.kernel, w2v_args)
    if grad_cache_chunk and (kernel in ("fused", "hogbatch") or w2v_args.hogwild):
        why = (
            "the fused kernel has no encoder pass to chunk"
            if kernel in ("fused", "hogbatch")
            else ("--hogwild does not sync gradients")
        )
        raise ValueError(
            f"--grad_cache_chunk {grad_cache_chunk}: {why} (kernel {kernel}); use --kernel "
            "torch without --hogwild, or --grad_cache_chunk 0"
        )
    cached_step = step_for(grad_cache_chunk, config.batch_size) if grad_cache_chunk else None
    warn_kernel_settings(kernel, w2v_args, config)
    t0 = time.perf_counter()
    vocab, encoded = load_encoded(data, config.progress_bar)
    prepare_s = time.perf_counter() - t0
    shown = pick_words(vocab.words, eval_args.show_words)  # an unknown word: named before training
    torch.manual_seed(config.seed)
    # DistributedDataParallel cannot all-reduce sparse gradients: several processes use dense
    # ones, unless they share one copy of the tables (hogwild: no gradient sync at all)
    single = int(os.environ.get("WORLD_SIZE", "1")) == 1
    sparse = w2v_args.sparse and (single or w2v_args.hogwild)
    w2v = Word2Vec.from_vocab(vocab, w2v_args.dim, sparse=sparse)
    optimizer = None
    if kernel == "hogbatch":
        model, step = (
            w2v,
            HogBatchSkipGram(
                w2v,
                negative=w2v_args.negative,
                ns_exponent=w2v_args.ns_exponent,
                hogwild=w2v_args.hogwild,
            ),
        )
    elif kernel == "fused":
        model, step = (
            w2v,
            FusedSkipGram(
                w2v,
                negative=w2v_args.negative,
                ns_exponent=w2v_args.ns_exponent,
                pairs_per_program=w2v_args.pairs_per_program,
                hogwild=w2v_args.hogwild,
            ),
        )
    else:
        model = methods.sgns(
            w2v,
            w2v_args.negative,
            w2v_args.ns_exponent,
            shared_negatives=w2v_args.shared_negatives,
            noise_group=(w2v_args.noise_group or None) if w2v_args.shared_negatives else None,
        )
        step = cached_step or AutogradStep(hogwild=w2v_args.hogwild)
        if w2v_args.row_clip:

            def optimizer(m):
                c = config
                return build_optimizer(
                    m, c.optimizer, c.lr, c.weight_decay, c.momentum, row_clip=w2v_args.row_clip
                )

    pairs = ContextPairs(
        encoded,
        vocab.counts,
        window=w2v_args.window,
        sample=w2v_args.sample,
        shuffle_blocks=w2v_args.shuffle_blocks,
        seed=config.seed,
    )

    def evaluate(_) -> dict[str, float]:  # trackers take numbers: leave out what was not measured
        return {k: v for k, v in word_scores(w2v, eval_args).items() if v is not None}

    # the random-init vectors' scores, the card's baseline (each process, before any trains)
    random_init = word_scores(w2v, eval_args)

    trainer = Trainer(model, pairs, config, step=step, optimizer=optimizer, evaluate=evaluate)
    t1 = time.perf_counter()
    result = trainer.fit()
    train_s = time.perf_counter() - t1
    out = Path(config.output_dir)
    main_process = trainer.accelerator.is_main_process
    scores = word_scores(w2v, eval_args)
    if main_process:
        save_run(
            out / "model",
            w2v,
            model_name=f"word2vec-{Path(data.corpus).name.split('.')[0]}-{w2v_args.dim}d",
            method_tags=["word2vec", "skip-gram", "negative-sampling"],
            datasets=[data.corpus if not Path(data.corpus).is_file() else Path(data.corpus).name],
            metrics=eval_results(scores, eval_args),
            baseline=eval_results(random_init, eval_args),
            description=loss_description(kernel, w2v_args),
            hyperparameters=[data, w2v_args, {"kernel_used": kernel}, eval_args, config],
        )
    figures = (
        word_figures(out, result.history, w2v.vectors, vocab.words, show_words=shown)
        if main_process
        else []
    )
    return {
        "main_process": main_process,
        "processes": trainer.accelerator.num_processes,
        "kernel": kernel,
        "vocab_size": len(vocab),
        "corpus_words": encoded.raw_words,
        "pairs_per_epoch": pairs.num_pairs(),
        "steps": result.global_step,
        "prepare_seconds": round(prepare_s, 2),
        "train_seconds": round(train_s, 2),
        "words_per_second": round(encoded.raw_words * config.epochs / train_s),
        "final_loss": result.loss,
        **scores,
        "analogy_sections": analogy_sections(w2v, eval_args),
        "random_init": random_init,
        "figures": figures,
    }


def build_parser() -> HfArgumentParser:
    """The recipe's flags and defaults (``multicon word2vec --help`` lists them)."""
    parser = HfArgumentParser(
        (CorpusArgs, Word2VecArgs, EvalArgs, TrainConfig, HubArgs, GradCacheArgs)
    )
    parser.set_defaults(
        output_dir="runs/word2vec",
        epochs=5,
        batch_size=8192,
        optimizer="sgd",
        lr=0.025,
        momentum=0.0,
        weight_decay=0.0,
        schedule="linear",
        eval_every=0,
        log_every=100,
    )
    return parser


def main(argv: list[str] | None = None) -> dict:
    parser = build_parser()
    data, w2v_args, eval_args, config, hub, cache = parser.parse_args_into_dataclasses(args=argv)
    check_output_dir(config)  # a used output_dir is refused before any work
    figures = train(data, w2v_args, eval_args, config, cache.grad_cache_chunk)
    if not figures.pop("main_process"):
        return figures
    figures["push"] = hub.push_outcome(Path(config.output_dir) / "model")  # failure: recorded
    figures["hub_commit"] = (figures["push"] or {}).get("commit")
    report = {
        "command": " ".join(["python", *sys.argv]),
        "corpus": asdict(data),
        "word2vec": asdict(w2v_args),
        **figures,
    }
    text = json.dumps(report, indent=2, allow_nan=False)  # NaN is not JSON: never write it
    print(text)
    (Path(config.output_dir) / "report.json").write_text(text)
    return report


if __name__ == "__main__":
    main()
