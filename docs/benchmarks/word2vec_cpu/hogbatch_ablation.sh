#!/bin/bash
# The HogBatch ablation of docs/studies/hogbatch-simlex.md: each variant, seeds 0-4, on the
# first 10M words of enwiki17m, 2 epochs, 32,768 pairs a step, one run at a time on a quiet machine.
# Run from the repository root of a worktree with hogbatch_ablation.patch applied. It adds the
# compile-time switches HOGBATCH_RUN and HB_CLIP (passed in $MC_EXTRA_FLAGS), the pair order
# ($MC_BLOCK_TOKENS, $MC_SHUFFLE_BLOCKS) and a floor under the linear lr ($MC_MIN_LR_FRAC):
#   git apply docs/benchmarks/word2vec_cpu/hogbatch_ablation.patch
#   bash docs/benchmarks/word2vec_cpu/hogbatch_ablation.sh runs/ablation
set -euo pipefail
out=${1:?usage: hogbatch_ablation.sh OUT_DIR}
mkdir -p "$out"
for spec in "base:" "clip6:MC_EXTRA_FLAGS=-DHB_CLIP=6" "run4:MC_EXTRA_FLAGS=-DHOGBATCH_RUN=4" \
    "run2:MC_EXTRA_FLAGS=-DHOGBATCH_RUN=2" "local:MC_BLOCK_TOKENS=1024 MC_SHUFFLE_BLOCKS=1" \
    "minlr:MC_MIN_LR_FRAC=0.004"; do
  name=${spec%%:*}
  for seed in 0 1 2 3 4; do
    # shellcheck disable=SC2086  # the variant's settings split into words on purpose
    env ${spec#*:} python tools/bench_word2vec.py \
      --corpus ../shared/data/enwiki17m/enwiki17m.txt.gz --max_words 10000000 --epochs 2 \
      --threads 2 --workers 2 --overhead_steps 0 --kernel hogbatch --batch_size 32768 \
      --skip_gensim --seed "$seed" --out "$out/${name}_s${seed}.json"
  done
done
