# A tiny OpenCLIP ViT with random weights, shipped with the package: runs anywhere, in seconds.
backbone = dict(type="open_clip", arch="harma-tiny-vit")
