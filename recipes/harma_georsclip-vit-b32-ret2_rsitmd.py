# HarMA reference pairing: GeoRSCLIP ViT-B/32 RET-2 -> RSITMD (method spec section 7).
_base_ = [
    "_base_/backbones/georsclip_vit_b32_ret2.py",
    "_base_/methods/harma.py",
    "_base_/datasets/rsitmd.py",
    "_base_/schedules/reference.py",
]
schedule = dict(lr=4e-6, epochs=80)
