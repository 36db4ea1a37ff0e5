# GeoRSCLIP ViT-B/32: CLIP fine-tuned on RS5M, a plain OpenCLIP state dict for the OpenAI QuickGELU model
# (zoo backbone `georsclip-vit-b32`; its file RS5M_ViT-B-32.pt comes from the zoo cache or $HARMA_ZOO_WEIGHTS).
backbone = dict(type="open_clip", arch="ViT-B-32-quickgelu", pretrained="zoo:georsclip-vit-b32")
