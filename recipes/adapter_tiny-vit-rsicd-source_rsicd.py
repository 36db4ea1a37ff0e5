# A plain bottleneck adapter on every MLP branch, with HarMA's loss; from the tiny ViT pretrained on half of
# RSICD's scene classes to all of RSICD: a row of `make transfer` (see _base_/pairings/).
_base_ = ["_base_/pairings/tiny_vit_rsicd_source__rsicd_peft.py", "_base_/methods/adapter.py"]
