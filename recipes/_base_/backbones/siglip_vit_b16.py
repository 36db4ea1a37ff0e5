# SigLIP ViT-B/16 (WebLI) through OpenCLIP; its image tower is a timm ViT.
backbone = dict(type="open_clip", arch="ViT-B-16-SigLIP", pretrained="webli")
