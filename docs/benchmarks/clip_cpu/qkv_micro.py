"""Q, K and V as three projections (transformers' BERT and ViT) or one packed projection
(open_clip's `nn.MultiheadAttention`): forward + backward of the projections alone, on the CPU,
at the ViT-B/32 (50 tokens, width 768) and text (77 tokens, width 512) shapes, batch 16 and 64.
"packed" keeps one (3d, d) weight; "cat" concatenates three weights at each call (fusing
without changing a checkpoint's layout). Prints JSON: ms per call, the median of 20 after 3
warm-up calls, three rounds alternating the forms.

    python docs/benchmarks/clip_cpu/qkv_micro.py
"""

import json
import os
import statistics
import subprocess
import sys
import time

import torch
import torch.nn.functional as F


def ms_per_call(rows: int, width: int, form: str, reps: int = 20) -> float:
    x = torch.randn(rows, width, requires_grad=True)
    ws = [torch.randn(width, width, requires_grad=True) for _ in range(3)]
    bs = [torch.zeros(width, requires_grad=True) for _ in range(3)]
    packed_w = torch.randn(3 * width, width, requires_grad=True)
    packed_b = torch.zeros(3 * width, requires_grad=True)
    times = []
    for i in range(reps + 3):
        start = time.perf_counter()
        if form == "packed":
            q, k, v = F.linear(x, packed_w, packed_b).chunk(3, -1)
        elif form == "cat":
            q, k, v = F.linear(x, torch.cat(ws), torch.cat(bs)).chunk(3, -1)
        else:
            q, k, v = (F.linear(x, w, b) for w, b in zip(ws, bs, strict=True))
        (q.sum() + k.sum() + v.sum()).backward()
        if i >= 3:
            times.append(time.perf_counter() - start)
    return round(statistics.median(times) * 1e3, 3)


def main() -> None:
    torch.set_num_threads(2)
    torch.manual_seed(0)
    here = os.path.dirname(os.path.abspath(__file__))
    git = ["git", "-C", here]
    commit = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True)
    shapes = {
        "vit_b32_b16": (16 * 50, 768),
        "text_b16": (16 * 77, 512),
        "vit_b32_b64": (64 * 50, 768),
        "text_b64": (64 * 77, 512),
    }
    report = {
        "command": "python " + " ".join(sys.argv),
        "commit": commit.stdout.strip(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "load_average_start": os.getloadavg(),
        "ms_per_call": {},
    }
    for name, (rows, width) in shapes.items():
        for _ in range(3):
            for form in ("separate", "packed", "cat"):
                got = report["ms_per_call"].setdefault(name, {}).setdefault(form, [])
                got.append(ms_per_call(rows, width, form))
    report["load_average_end"] = os.getloadavg()
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
