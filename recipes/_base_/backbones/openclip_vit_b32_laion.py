# OpenCLIP ViT-B/32 trained on LAION-2B (plain GELU): the starting point of HarMA's LAION rows
# (zoo backbone `openclip-vit-b32-laion`, OpenCLIP tag laion2b_s34b_b79k).
backbone = dict(type="open_clip", arch="ViT-B-32", pretrained="zoo:openclip-vit-b32-laion")
