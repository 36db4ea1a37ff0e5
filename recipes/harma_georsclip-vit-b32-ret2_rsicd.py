# HarMA reference pairing: GeoRSCLIP ViT-B/32 RET-2 -> RSICD (the HarMA paper's settings; docs/recipes.md).
_base_ = [
    "_base_/backbones/georsclip_vit_b32_ret2.py",
    "_base_/methods/harma.py",
    "_base_/datasets/rsicd.py",
    "_base_/schedules/reference.py",
]
method = dict(bottleneck=128, shared_width=64, heads=8)  # the paper's sizes, stated (the width rule gives them too)
schedule = dict(lr=4e-6, epochs=80)
