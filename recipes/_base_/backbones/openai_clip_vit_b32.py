# OpenAI CLIP ViT-B/32 (QuickGELU) through OpenCLIP (zoo backbone `openai-clip-vit-b32`, OpenCLIP tag openai).
backbone = dict(type="open_clip", arch="ViT-B-32-quickgelu", pretrained="zoo:openai-clip-vit-b32")
