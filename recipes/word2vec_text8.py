"""word2vec skip-gram with negative sampling, through the shared contrastive engine.

On a CPU the step is word2vec's own per-pair loop in C (`FusedSkipGram`, `--kernel fused`,
chosen by `--kernel auto` when a C compiler is found); elsewhere, or with `--kernel torch`, the
engine's batched tensor step.

Any corpus: a text8-style single-line file, a line-per-sentence file (plain or .gz), or a Hub
dataset's text column (when online). Prints analogy / WS-353 / SimLex-999 scores, writes the model
in the Hub format (model.safetensors + config.json + vocab.txt) and the vectors in the word2vec C
binary format.

    python recipes/word2vec_text8.py --corpus ../shared/data/enwiki17m/enwiki17m.txt.gz \\
        --max_words 2000000 --output_dir runs/w2v --epochs 3
    python recipes/word2vec_text8.py --corpus text8.txt --kernel torch   # the engine's batched step
    ACCELERATE_USE_CPU=true torchrun --nproc_per_node 2 recipes/word2vec_text8.py --corpus ...
"""

# the module sets THP_MEM_ALLOC_ENABLE before torch is first imported (docs/word2vec.md)
from multicon.recipes.word2vec import main

if __name__ == "__main__":
    main()
