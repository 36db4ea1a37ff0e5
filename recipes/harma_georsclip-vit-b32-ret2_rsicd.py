# HarMA reference pairing: GeoRSCLIP ViT-B/32 RET-2 -> RSICD (the HarMA paper's settings; docs/recipes.md).
_base_ = [
    "_base_/backbones/georsclip_vit_b32_ret2.py",
    "_base_/methods/harma.py",
    "_base_/datasets/rsicd.py",
    "_base_/schedules/reference.py",
]
schedule = dict(lr=4e-6, epochs=80)
