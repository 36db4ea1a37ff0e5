# HarMA on BLIP ITM base (COCO), image-text-contrastive path -> RSICD. Not a paper setting.
# BLIP's two towers are both 768 wide; the shared modules fit them as for CLIP.
_base_ = [
    "_base_/backbones/blip_itm_base_coco.py",
    "_base_/methods/harma.py",
    "_base_/datasets/rsicd.py",
    "_base_/schedules/reference.py",
]
schedule = dict(lr=4e-4, epochs=10)
