#!/usr/bin/env bash
# The GPU figures issues #5 (word2vec words/s) and #6 (CLIP samples/s against open_clip) ask for,
# as one run on a lent H200. Every check writes its JSON (with the command that made it) and log
# to $OUT, and a line to $OUT/summary.txt; a failing or slow check does not stop the others.
#
#   make gpu-carry             # here: wheels into .whl/, enwiki17m and word-eval into .data/
#   bash tools/gpu_checks.sh   # there, with carry [".whl", ".data"]
#   SMOKE=1 OUT=runs/gpu-smoke bash tools/gpu_checks.sh   # every check, tiny, on a CPU
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-runs/gpu}
mkdir -p "$OUT"
if compgen -G ".whl/*.whl" >/dev/null; then  # open_clip and what it needs beyond the image's
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site
fi
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1
PY=${PYTHON:-python3}
LIMIT=${LIMIT:-120}  # seconds per check

check() {  # check NAME COMMAND...: JSON on stdout into $OUT/NAME.json, the rest into NAME.log
    local name=$1 start=$SECONDS
    shift
    timeout "$LIMIT" "$@" >"$OUT/$name.json" 2>"$OUT/$name.log"
    echo "$name rc=$? $((SECONDS - start))s" | tee -a "$OUT/summary.txt"
}

$PY -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name() \
if torch.cuda.is_available() else 'no GPU')" | tee "$OUT/summary.txt"

# issue 5: skip-gram, dim 100, window 5, min_count 5, negative 5, sample 1e-4, 5 epochs, as the
# gensim figure in the issue (16 workers: 38.7 s, 2.2M words/s, analogy 37.7 %, WS-353 0.665)
words=(--corpus .data/enwiki17m.txt.gz --epochs 5)
[ "${SMOKE:-0}" = 1 ] && words=(--corpus .data/enwiki17m.txt.gz --max_words 200000 --epochs 1)
eval=(--analogies .data/questions-words.txt --wordsim .data/wordsim353.tsv
    --simlex .data/simlex999.txt --skip_gensim --overhead_steps 0 --threads 0)
# Most telling first: the device may be lent for less time than all the checks take.
# The fused kernel on the GPU (Triton, one launch a step, word2vec's per-pair updates; concurrent
# programs' updates of one row sum, by atomic adds, as in a batch of 8,192 or 1,024 pairs).
# Untried on a GPU; its quality in a CPU simulation is in docs/word2vec.md.
fused=(--kernel fused --batch_size 262144)
check w2v_fused_gpu_ppp32 $PY tools/bench_word2vec.py "${words[@]}" "${eval[@]}" "${fused[@]}"
# the engine's batched step: from 65,536 pairs a step plain SGD diverges (measured on the CPU),
# so each row's step is capped (--row_clip 1); more noise words per group win back what large
# batches lose. docs/word2vec.md has the CPU quality of each of these settings on this corpus.
w2v() { check "$1" $PY tools/bench_word2vec.py "${words[@]}" "${eval[@]}" --row_clip 1 "${@:2}"; }
w2v w2v_b65536_n32 --batch_size 65536 --shared_negatives 32

# issue 6: open_clip 3.3's ViT-B-32 and RN50 shapes, random init, 224 px, batch 512, bf16
# autocast, AdamW (the issue's open_clip figures: 4,225 and 1,499 samples/s)
clip=(--image_size 224 --batch_size 512 --mixed_precision bf16 --steps 10 --warmup 3)
[ "${SMOKE:-0}" = 1 ] && clip=(--image_size 224 --batch_size 2 --steps 1 --warmup 1)
text=(--text_width 512 --text_depth 12 --text_heads 8 --vocab_size 49408 --context_length 77)
check clip_vit_b32 $PY tools/bench_captions.py --image_arch vit --vit_patch_size 32 \
    --vit_width 768 --vit_depth 12 --vit_heads 12 "${text[@]}" --embed_dim 512 "${clip[@]}" \
    --open_clip_model ViT-B-32
check clip_rn50 $PY tools/bench_captions.py --image_arch resnet50 "${text[@]}" --embed_dim 1024 \
    "${clip[@]}" --open_clip_model RN50
# issue 24: the same with torch.compile on both sides (multicon's towers, open_clip's model) and
# with open_clip on the fused AdamW that multicon's build_optimizer uses. Target: >= 1.2x.
compiled=(--compile)
[ "${SMOKE:-0}" = 1 ] && compiled=()  # inductor needs minutes on a CPU: the smoke run skips it
check clip_vit_b32_compile $PY tools/bench_captions.py --image_arch vit --vit_patch_size 32 \
    --vit_width 768 --vit_depth 12 --vit_heads 12 "${text[@]}" --embed_dim 512 "${clip[@]}" \
    --open_clip_model ViT-B-32 "${compiled[@]}"
check clip_vit_b32_oc_fused $PY tools/bench_captions.py --image_arch vit --vit_patch_size 32 \
    --vit_width 768 --vit_depth 12 --vit_heads 12 "${text[@]}" --embed_dim 512 "${clip[@]}" \
    --open_clip_model ViT-B-32 --open_clip_fused_adamw --multicon false
check clip_rn50_compile $PY tools/bench_captions.py --image_arch resnet50 "${text[@]}" \
    --embed_dim 1024 "${clip[@]}" --open_clip_model RN50 "${compiled[@]}"

# issue 5, what is left: the fused kernel with 8x fewer programs, the other batched settings
check w2v_fused_gpu_ppp256 $PY tools/bench_word2vec.py "${words[@]}" "${eval[@]}" "${fused[@]}" \
    --pairs_per_program 256
w2v w2v_b65536 --batch_size 65536
w2v w2v_b262144_n32 --batch_size 262144 --shared_negatives 32
w2v w2v_exact_b65536 --batch_size 65536 --shared_negatives 0

# issue 5 on the same machine's CPU: the fused C kernel on 16 threads, against gensim's 16 workers
# (38.7 s there). It is compiled there on first use and needs a C compiler; without one the
# check fails and its log says so.
check w2v_fused_cpu16 env ACCELERATE_USE_CPU=true $PY tools/bench_word2vec.py "${words[@]}" \
    "${eval[@]}" --kernel fused --threads 16

# issue 21: GradCache at a global batch of 4,096 in chunks of 256 against the plain step up to the
# largest batch that fits (ResNet-18, CIFAR stem, 32 px, SimCLR; torch.cuda.max_memory_allocated).
# Targets: GradCache's peak within 1.3x of the plain step at 256, its time per sample within 1.5x
# of the plain step's at the largest batch that fits.
gc=(--global_batch 4096 --chunk 256 --repeats 3)
[ "${SMOKE:-0}" = 1 ] && gc=(--encoder small_cnn --global_batch 32 --chunk 8 --repeats 1 --steps 1)
check grad_cache $PY tools/bench_grad_cache.py "${gc[@]}"
