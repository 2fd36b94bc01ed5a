#!/bin/bash
# The HogBatch ablation of docs/studies/hogbatch-simlex.md: each variant, seeds 0-4, on the first
# 10M words of enwiki17m, 2 epochs, 32,768 pairs a step, one run at a time on a quiet machine.
# Run from the repository root of a worktree with hogbatch_ablation.patch applied. The patch adds
# the compile-time switches HOGBATCH_RUN and HB_CLIP (passed in $MC_EXTRA_FLAGS), the shuffle
# block size ($MC_BLOCK_TOKENS) and a floor under the linear lr ($MC_MIN_LR_FRAC):
#   git apply docs/benchmarks/word2vec_cpu/hogbatch_ablation.patch
#   bash docs/benchmarks/word2vec_cpu/hogbatch_ablation.sh runs/ablation
set -euo pipefail
out=${1:?usage: hogbatch_ablation.sh OUT_DIR}
mkdir -p "$out"
# name | environment | recipe flags (the study's default was 4 blocks; the recipe's is 16 since)
variants=(
  "base||--shuffle_blocks 4"
  "clip6|MC_EXTRA_FLAGS=-DHB_CLIP=6|--shuffle_blocks 4"
  "run4|MC_EXTRA_FLAGS=-DHOGBATCH_RUN=4|--shuffle_blocks 4"
  "run2|MC_EXTRA_FLAGS=-DHOGBATCH_RUN=2|--shuffle_blocks 4"
  "local|MC_BLOCK_TOKENS=1024|--shuffle_blocks 1"
  "minlr|MC_MIN_LR_FRAC=0.004|--shuffle_blocks 4"
  "wide16||--shuffle_blocks 16"
  "wide64||--shuffle_blocks 64"
  "narrow|MC_BLOCK_TOKENS=16384|--shuffle_blocks 16"
)
# The JSON's "alternating" runs (narrow against base on seeds 0-4, wide16 against base on seeds
# 5-9) are the same commands, the two variants one after the other for each seed.
for variant in "${variants[@]}"; do
  IFS="|" read -r name settings flags <<< "$variant"
  for seed in 0 1 2 3 4; do
    # shellcheck disable=SC2086  # settings and flags split into words on purpose
    env $settings python tools/bench_word2vec.py \
      --corpus ../shared/data/enwiki17m/enwiki17m.txt.gz --max_words 10000000 --epochs 2 \
      --threads 2 --workers 2 --overhead_steps 0 --kernel hogbatch --batch_size 32768 $flags \
      --skip_gensim --seed "$seed" --out "$out/${name}_s${seed}.json"
  done
done
