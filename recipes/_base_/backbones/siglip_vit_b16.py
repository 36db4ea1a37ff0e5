# SigLIP ViT-B/16 (WebLI) through OpenCLIP; its image tower is a timm ViT (zoo backbone `siglip-vit-b16`, tag webli).
backbone = dict(type="open_clip", arch="ViT-B-16-SigLIP", pretrained="zoo:siglip-vit-b16")
