# GeoRSCLIP ViT-H/14 (from the LAION-2B ViT-H/14), fine-tuned on RS5M (zoo backbone `georsclip-vit-h14`; its file
# RS5M_ViT-H-14.pt comes from the zoo cache or $HARMA_ZOO_WEIGHTS).
backbone = dict(type="open_clip", arch="ViT-H-14", pretrained="zoo:georsclip-vit-h14")
