#!/bin/bash
# Does the recipe (libgomp's default wait policy) train as fast as the benchmark, which sets
# OMP_WAIT_POLICY=PASSIVE? HogBatch at the recipe's defaults (32,768 pairs, 16 blocks), the
# first 10M words of enwiki17m, 1 epoch, 2 threads, the two policies alternating, nine rounds, on a
# quiet machine. An empty OMP_WAIT_POLICY keeps libgomp's default (libgomp warns that it is
# invalid) while the benchmark's own default, PASSIVE, stays unset.
#   bash docs/benchmarks/word2vec_cpu/omp_wait_policy.sh runs/omp
set -euo pipefail
out=${1:?usage: omp_wait_policy.sh OUT_DIR}
mkdir -p "$out"
for round in 1 2 3 4 5 6 7 8 9; do
  for policy in PASSIVE ""; do
    OMP_WAIT_POLICY=$policy python tools/bench_word2vec.py \
      --corpus ../shared/data/enwiki17m/enwiki17m.txt.gz --max_words 10000000 --epochs 1 \
      --threads 2 --overhead_steps 0 --kernel hogbatch --batch_size 32768 --skip_gensim true \
      --token_cache .data/cache_10m --analogies "" --wordsim "" --simlex "" \
      --out "$out/r${round}_${policy:-default}.json"
  done
done
