# OpenAI CLIP ViT-L/14 (QuickGELU) through OpenCLIP (zoo backbone `openai-clip-vit-l14`, OpenCLIP tag openai).
backbone = dict(type="open_clip", arch="ViT-L-14-quickgelu", pretrained="zoo:openai-clip-vit-l14")
