# Stage 2 of the built-in demo: HarMA transfers the source-pretrained tiny ViT (stage 1,
# exported to backbone.pretrained) to the TARGET domain: the scenes over desert and farmland.
_base_ = [
    "_base_/backbones/small_vit.py",
    "_base_/methods/harma.py",
    "_base_/datasets/synthetic.py",
    "_base_/schedules/cpu_small.py",
]
backbone = dict(pretrained="{{$HARMA_ZOO_HOME:work_dirs}}/demo/small-vit-synthetic-source.safetensors")
method = dict(bottleneck=32, shared_width=16, heads=4)
data = dict(train_classes=["desert", "farmland"], val_classes=["desert", "farmland"])
schedule = dict(epochs=8, batch_size=32, lr=2e-3, num_workers=0, val_interval=2)
