# HarMA reference pairing: LAION ViT-B/32 -> RSICD (the HarMA paper's settings; docs/recipes.md).
_base_ = [
    "_base_/backbones/openclip_vit_b32_laion.py",
    "_base_/methods/harma.py",
    "_base_/datasets/rsicd.py",
    "_base_/schedules/reference.py",
]
method = dict(bottleneck=128, shared_width=64, heads=8)  # the paper's sizes, stated (the width rule gives them too)
schedule = dict(lr=4e-4, epochs=10)
