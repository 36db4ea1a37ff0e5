# CPU smoke pairing: HarMA on the tiny OpenCLIP ViT with RANDOM frozen weights -> RSICD (validation
# split). It runs anywhere in minutes but learns little: HarMA needs a pretrained backbone.
_base_ = [
    "_base_/backbones/tiny_vit.py",
    "_base_/methods/harma.py",
    "_base_/datasets/rsicd.py",
    "_base_/schedules/cpu_small.py",
]
method = dict(bottleneck=32, shared_width=16, heads=4)
