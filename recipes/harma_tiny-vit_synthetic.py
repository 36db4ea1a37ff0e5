# The built-in default (`make demo`): HarMA on the tiny random OpenCLIP ViT, trained on the
# synthetic dataset the package draws itself. A few CPU minutes.
_base_ = [
    "_base_/backbones/tiny_vit.py",
    "_base_/methods/harma.py",
    "_base_/datasets/synthetic.py",
    "_base_/schedules/cpu_small.py",
]
method = dict(bottleneck=32, shared_width=16, heads=4)
schedule = dict(epochs=4, batch_size=32, lr=2e-3, num_workers=0, val_batch_size=128)
