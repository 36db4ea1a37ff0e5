# Stage 1 of the built-in demo: train the small OpenCLIP ViT from scratch (method `full`) on the
# SOURCE domain of the synthetic dataset: the scenes over water and forest. Pretraining from
# scratch uses the plain contrastive loss, as CLIP-style pretraining does.
_base_ = [
    "_base_/backbones/small_vit.py",
    "_base_/methods/full.py",
    "_base_/datasets/synthetic.py",
    "_base_/schedules/cpu_small.py",
]
loss = dict(_delete_=True, type="contrastive")
data = dict(train_classes=["water", "forest"], val_classes=["water", "forest"])
schedule = dict(epochs=15, batch_size=32, lr=1e-3, warmup_ratio=0.05, num_workers=0, val_interval=5)
