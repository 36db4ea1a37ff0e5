# A small OpenCLIP ViT (4 layers, width 128, 8-pixel patches at 64 px) shipped with the package:
# big enough to learn retrieval from scratch on a CPU in minutes.
backbone = dict(type="open_clip", arch="harma-small-vit")
