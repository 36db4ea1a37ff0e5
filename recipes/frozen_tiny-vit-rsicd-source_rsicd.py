# Zero-shot: the pretrained backbone as it is, nothing trained; from the tiny ViT pretrained on half of
# RSICD's scene classes to all of RSICD: a row of `make transfer` (see _base_/pairings/).
_base_ = ["_base_/pairings/tiny_vit_rsicd_source__rsicd.py", "_base_/methods/frozen.py"]
