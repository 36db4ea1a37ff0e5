# The transfer pairing for the parameter-efficient methods (harma, harma-paper, lora, adapter): 20x the
# rate of `full` (5e-4). 1e-2 of {3e-3, 1e-2} was chosen by one-epoch probes of HarMA on this pairing
# (val mR 2.59 and 2.93; zero-shot 2.31); 5e-4 left HarMA below zero-shot after an epoch.
_base_ = ["./tiny_vit_rsicd_source__rsicd.py"]
schedule = dict(lr=1e-2)
tuning = dict(lrs=[3e-3, 1e-2, 3e-2])  # around 1e-2, as the pairing's tuning says
