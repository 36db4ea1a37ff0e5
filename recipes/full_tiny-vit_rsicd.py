# CPU pairing on real images: the tiny OpenCLIP ViT trained from scratch (method `full`) on the
# RSICD training split, selected and reported on the validation split (the test split is not in
# the shared data). Contrastive loss, as for CLIP-style training from scratch.
_base_ = [
    "_base_/backbones/tiny_vit.py",
    "_base_/methods/full.py",
    "_base_/datasets/rsicd.py",
    "_base_/schedules/cpu_small.py",
]
loss = dict(_delete_=True, type="contrastive")
schedule = dict(epochs=4, batch_size=64, lr=1e-3, warmup_ratio=0.05, num_workers=2, val_interval=2, log_interval=50)
