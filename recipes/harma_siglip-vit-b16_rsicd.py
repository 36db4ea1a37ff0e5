# HarMA on SigLIP ViT-B/16 (through OpenCLIP) -> RSICD. Not a paper setting: LAION-row settings.
_base_ = [
    "_base_/backbones/siglip_vit_b16.py",
    "_base_/methods/harma.py",
    "_base_/datasets/rsicd.py",
    "_base_/schedules/reference.py",
]
schedule = dict(lr=4e-4, epochs=10)
