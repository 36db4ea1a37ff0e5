# A plain bottleneck adapter on every MLP branch, with HarMA's loss; from the tiny ViT pretrained on half of
# RSICD's scene classes to all of RSICD: a row of `make transfer` (see _base_/pairings/).
_base_ = ["_base_/pairings/tiny_vit_rsicd_source__rsicd.py", "_base_/methods/adapter.py"]
# Parameter-efficient methods train at 20x the rate of `full` (5e-4): 1e-2 of {3e-3, 1e-2}, chosen by
# one-epoch probes of HarMA on this pairing (val mR 2.59 and 2.93; zero-shot 2.31).
schedule = dict(lr=1e-2)
