# RemoteCLIP ViT-L/14: a plain OpenCLIP state dict (zoo backbone `remoteclip-vit-l14`; its file
# RemoteCLIP-ViT-L-14.pt comes from the zoo cache or $HARMA_ZOO_WEIGHTS).
backbone = dict(type="open_clip", arch="ViT-L-14-quickgelu", pretrained="zoo:remoteclip-vit-l14")
