# HarMA as the paper describes it (each shared module used by both towers), sized as in
# harma_tiny-vit-rsicd-source_rsicd; a row of `make transfer` (see _base_/pairings/).
_base_ = ["_base_/pairings/tiny_vit_rsicd_source__rsicd.py", "_base_/methods/harma_paper.py"]
method = dict(bottleneck=32, shared_width=16, heads=4)
# Parameter-efficient methods train at 20x the rate of `full` (5e-4): 1e-2 of {3e-3, 1e-2}, chosen by
# one-epoch probes of HarMA on this pairing (val mR 2.59 and 2.93; zero-shot 2.31).
schedule = dict(lr=1e-2)
