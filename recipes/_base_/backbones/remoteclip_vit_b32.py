# RemoteCLIP ViT-B/32: a plain OpenCLIP state dict (zoo backbone `remoteclip-vit-b32`; its file
# RemoteCLIP-ViT-B-32.pt comes from the zoo cache or $HARMA_ZOO_WEIGHTS).
backbone = dict(type="open_clip", arch="ViT-B-32-quickgelu", pretrained="zoo:remoteclip-vit-b32")
