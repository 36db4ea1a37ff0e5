# Stage 1 of the CPU transfer benchmark: the tiny OpenCLIP ViT trained FROM SCRATCH (method `full`,
# contrastive loss) on the source half of RSICD's scene classes (see _base_/datasets/rsicd_source.py),
# selected on the validation images of those classes. Its best checkpoint, exported with
# `harma-zoo export-backbone`, is the zoo backbone `harma-tiny-vit-rsicd-source`. ~12 min on 2 CPU cores.
_base_ = [
    "_base_/backbones/tiny_vit.py",
    "_base_/methods/full.py",
    "_base_/datasets/rsicd_source.py",
    "_base_/schedules/cpu_small.py",
]
loss = dict(_delete_=True, type="contrastive")
schedule = dict(epochs=10, batch_size=64, lr=1e-3, warmup_ratio=0.05, num_workers=2, val_interval=2, log_interval=50)
