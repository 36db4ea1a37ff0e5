# The transfer pairing for the parameter-efficient methods (harma, harma-paper, lora, adapter): their grid is
# 3e-3, 1e-2, 3e-2 (20x `full`'s rates; 5e-4 left HarMA below zero-shot after an epoch). 1e-2 is the rate the
# grid chose for harma-paper and adapter; harma and lora state theirs (benchmarks/results/rsicd-transfer-tune).
_base_ = ["./tiny_vit_rsicd_source__rsicd.py"]
schedule = dict(lr=1e-2)
tuning = dict(lrs=[3e-3, 1e-2, 3e-2])  # around 1e-2, as the pairing's tuning says
