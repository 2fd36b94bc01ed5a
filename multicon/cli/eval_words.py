"""``multicon eval words``: analogy accuracy and word-similarity ρ (WS-353, SimLex-999) of saved
word2vec vectors, scored as the word2vec recipe scores them. Prints JSON with the command.

    multicon eval words --model runs/word2vec/model --analogies questions-words.txt \\
        --wordsim wordsim353.tsv --simlex simlex999.txt
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict, dataclass, field

from transformers import HfArgumentParser

from multicon.cli.saved import model_class, require_kind


@dataclass
class WordModelArgs:
    model: str = field(metadata={"help": "Folder the word2vec recipe saved (its model/)."})


def build_parser() -> HfArgumentParser:
    """The command's flags: the model and the word2vec recipe's evaluation files."""
    from multicon.recipes.word2vec import EvalArgs

    return HfArgumentParser((WordModelArgs, EvalArgs))


def main(argv: list[str] | None = None, prog: str = "multicon eval words") -> dict:
    """Evaluate, print and return the JSON report; ``prog`` starts its ``command``."""
    from multicon.recipes.word2vec import analogy_sections, word_scores

    model_args, eval_args = build_parser().parse_args_into_dataclasses(args=argv)
    require_kind(model_args.model, "words", prog)
    if not (eval_args.analogies or eval_args.wordsim or eval_args.simlex):
        raise ValueError("nothing to evaluate: give --analogies, --wordsim or --simlex files")
    model = model_class("words").from_pretrained(model_args.model)
    result = {
        **word_scores(model, eval_args),
        "analogy_sections": analogy_sections(model, eval_args),
        "vocab_size": len(model.vocab),
        "command": " ".join([prog, *(argv if argv is not None else sys.argv[1:])]),
        "args": {**asdict(model_args), **asdict(eval_args)},
    }
    print(json.dumps(result, indent=2, allow_nan=False))
    return result
