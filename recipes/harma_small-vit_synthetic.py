# The built-in default (`make demo` runs it as `harma-zoo bench --preset demo`): the package's small
# OpenCLIP ViT with random frozen weights, on the synthetic aerial dataset the package draws itself.
# No download; a few CPU minutes per method. Frozen random features are a hard start for HarMA:
# the demo shows the mechanics and that the adapters learn, not what HarMA does on a pretrained model.
_base_ = [
    "_base_/backbones/small_vit.py",
    "_base_/methods/harma.py",
    "_base_/datasets/synthetic.py",
    "_base_/schedules/cpu_small.py",
]
method = dict(bottleneck=32, shared_width=16, heads=4)
data = dict(
    root="{{$HARMA_ZOO_HOME:work_dirs}}/synthetic-600-150",
    synthetic=dict(train_images=600, val_images=150, size=64, seed=0),
)
schedule = dict(epochs=5, batch_size=32, lr=3e-3, num_workers=0, val_interval=1, val_batch_size=150)
