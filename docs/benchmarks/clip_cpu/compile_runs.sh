#!/bin/bash
# Does --compile pay on a CPU? The CLIP step against open_clip, ViT-B-32 size, batch 16, 2 threads,
# eager and compiled alternating (both sides compiled in the compiled runs), two rounds, quiet.
# The compiled runs' two untimed steps hold the compilation (about 3 minutes with an empty
# inductor cache). Run with the venv's python first on the PATH: PATH=.venv/bin:$PATH bash ...
cd "$(git -C "$(dirname "$0")" rev-parse --show-toplevel)"
OUT=${OUT:-runs/clip_cpu_compile}
mkdir -p $OUT
VIT="--image_arch vit --image_size 224 --vit_patch_size 32 --vit_width 768 --vit_depth 12 --vit_heads 12 --text_width 512 --text_depth 12 --text_heads 8 --vocab_size 49408 --context_length 77 --embed_dim 512 --open_clip_model ViT-B-32"
for r in 1 2; do
  for mode in eager compiled; do
    if [ $mode = compiled ]; then C="--compile"; else C=""; fi
    python tools/bench_captions.py $VIT --threads 2 --batch_size 16 --warmup 2 --steps 3 $C \
      > $OUT/vitb32_b16_${mode}_r${r}.json 2> $OUT/vitb32_b16_${mode}_r${r}.err
  done
done
