"""MoCo on CIFAR-10: keys from a momentum (EMA) encoder; negatives from a queue of past keys.

Presets:

* ``--version v2`` (default; MoCo v2, Chen et al. 2020): views with crop scale 0.2–1, jitter
  0.4/0.4/0.4/0.1 p 0.8, grayscale p 0.2 (no blur at 32 px); head 512→2048→128 without
  BatchNorm; each query scored against its own key and a queue of ``--queue_size`` 4096 past
  keys (lightly's CIFAR-10 setting) at temperature 0.1; key encoder momentum 0.99 rising to 1 on
  a cosine over training.
* ``--version v3`` (MoCo v3, Chen et al. 2021): 3-layer head 512→2048→256 with a last
  BatchNorm, 2-layer predictor (hidden 2048) on the query side only, symmetric loss over the
  batch's momentum keys (no queue), temperature 0.2, asymmetric views (blur/solarize; blur only
  from 64 px).

Both: ResNet-18 CIFAR stem, SGD momentum 0.9, weight decay 5e-4, lr 0.12 per 256 images scaled
with the global batch, cosine decay, 200 epochs at batch 512, kNN monitor every 10 epochs.

    python recipes/moco_cifar10.py --output_dir runs/moco --mixed_precision bf16
    accelerate launch --num_processes 2 recipes/moco_cifar10.py --output_dir runs/moco2
    python recipes/moco_cifar10.py --version v3 --output_dir runs/mocov3
"""

from multicon.recipes.moco import main

if __name__ == "__main__":
    main()
