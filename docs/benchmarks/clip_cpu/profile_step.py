"""Self-CPU time per operator of two CLIP training steps at ViT-B/32 size, batch 16, fp32, two
threads: ``python profile_step.py multicon|open_clip`` (PYTHONPATH: the repository)."""

import sys

import torch
from torch.profiler import ProfilerActivity, profile

from multicon.bench.captions import build_parser, synthetic_batch

which = sys.argv[1]
batch = int(sys.argv[2]) if len(sys.argv) > 2 else 16
torch.set_num_threads(2)
torch.manual_seed(0)
VIT = (
    "--image_arch vit --image_size 224 --vit_patch_size 32 --vit_width 768 --vit_depth 12 "
    "--vit_heads 12 --text_width 512 --text_depth 12 --text_heads 8 --vocab_size 49408 "
    f"--context_length 77 --embed_dim 512 --batch_size {batch}"
).split()
margs, args = build_parser().parse_args_into_dataclasses(args=VIT)
if which == "multicon":
    from multicon.caption_recipe import build_contrastive_model
    from multicon.encoders.dual import DualEncoder
    from multicon.encoders.dual_args import tower_specs

    image, text = tower_specs(margs, vocab_size=margs.vocab_size, max_length=77)
    model = DualEncoder.create(image, text, embed_dim=512, image_size=224)
    cm = build_contrastive_model(model, margs).train()
    print("attn", model.text.backbone.config._attn_implementation)
    opt = torch.optim.AdamW([p for p in cm.parameters() if p.requires_grad], lr=1e-4)
    b = synthetic_batch(args, 224, 49408, torch.device("cpu"))

    def step():
        out = cm(b)
        out.loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        cm.after_step(out, progress=0.5)
else:
    import open_clip

    model = open_clip.create_model("ViT-B-32", pretrained=None).train()
    loss_fn = open_clip.ClipLoss()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    g = torch.Generator().manual_seed(0)
    images = torch.randn(batch, 3, 224, 224, generator=g)
    texts = torch.randint(1, 49408, (batch, 77), generator=g)

    def step():
        i = model.encode_image(images, normalize=True)
        t = model.encode_text(texts, normalize=True)
        loss_fn(i, t, model.logit_scale.exp()).backward()
        opt.step()
        opt.zero_grad(set_to_none=True)


for _ in range(2):
    step()
with profile(activities=[ProfilerActivity.CPU]) as prof:
    for _ in range(2):
        step()
print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=35))
