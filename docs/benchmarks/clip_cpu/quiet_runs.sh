#!/bin/bash
# docs/studies/clip-step-cpu.md's quiet runs: the CLIP step vs open_clip, CPU, batch 16 and 64, ViT-B-32 and RN50 sizes; each run's JSON and load.
cd "$(git -C "$(dirname "$0")" rev-parse --show-toplevel)"
OUT=${OUT:-runs/clip_cpu_quiet}
mkdir -p $OUT
VIT="--image_arch vit --image_size 224 --vit_patch_size 32 --vit_width 768 --vit_depth 12 --vit_heads 12 --text_width 512 --text_depth 12 --text_heads 8 --vocab_size 49408 --context_length 77 --embed_dim 512 --open_clip_model ViT-B-32"
RN="--image_arch resnet50 --image_size 224 --text_width 512 --text_depth 12 --text_heads 8 --vocab_size 49408 --context_length 77 --embed_dim 1024 --open_clip_model RN50"
for r in 1 2; do
  for b in 16 64; do
    if [ $b = 16 ]; then S="--warmup 1 --steps 3"; else S="--warmup 1 --steps 2"; fi
    for m in vit rn50; do
      if [ $m = vit ]; then A=$VIT; N=vitb32; else A=$RN; N=rn50; fi
      echo "$(date -u +%H:%M:%S) load $(cut -d' ' -f1-3 /proc/loadavg) start ${N}_b${b}_quiet_r${r}" >> $OUT/log.txt
      python tools/bench_captions.py $A --threads 2 --batch_size $b $S > $OUT/${N}_b${b}_quiet_r${r}.json 2> $OUT/${N}_b${b}_quiet_r${r}.err
      rc=$?
      echo "$(date -u +%H:%M:%S) load $(cut -d' ' -f1-3 /proc/loadavg) end ${N}_b${b}_quiet_r${r} rc $rc" >> $OUT/log.txt
    done
  done
done
