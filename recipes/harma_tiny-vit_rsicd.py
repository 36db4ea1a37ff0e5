# CPU pairing: HarMA on the tiny random OpenCLIP ViT -> RSICD (validation split).
_base_ = [
    "_base_/backbones/tiny_vit.py",
    "_base_/methods/harma.py",
    "_base_/datasets/rsicd.py",
    "_base_/schedules/cpu_small.py",
]
method = dict(bottleneck=32, shared_width=16, heads=4)
