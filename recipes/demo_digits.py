"""SimCLR on scikit-learn's handwritten digits: the offline demo of the whole engine.

Two random affine views of each 8×8 scan are a positive pair; the other images of the batch are
the negatives. Prints the kNN accuracy on held-out digits of the random-init encoder and of the
trained one, and writes a Hub-ready model folder (``--push_to_hub namespace/name`` uploads it).

    python recipes/demo_digits.py --output_dir runs/digits
    ACCELERATE_USE_CPU=true accelerate launch --multi_gpu --num_processes 2 recipes/demo_digits.py \
        --output_dir runs/digits2   # two CPU processes (gloo)
"""

from multicon.recipes.demo import main

if __name__ == "__main__":
    main()
