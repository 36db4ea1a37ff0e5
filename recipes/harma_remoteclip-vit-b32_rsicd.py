# HarMA on RemoteCLIP ViT-B/32 -> RSICD. Not a paper setting: the small learning rate of the
# GeoRSCLIP rows is used because RemoteCLIP is also already adapted to remote sensing.
_base_ = [
    "_base_/backbones/remoteclip_vit_b32.py",
    "_base_/methods/harma.py",
    "_base_/datasets/rsicd.py",
    "_base_/schedules/reference.py",
]
schedule = dict(lr=4e-6, epochs=80)
