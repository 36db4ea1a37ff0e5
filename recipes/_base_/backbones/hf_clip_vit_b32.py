# OpenAI CLIP ViT-B/32 through Hugging Face transformers (zoo backbone `hf-clip-vit-b32`).
backbone = dict(type="hf_clip", source="zoo:hf-clip-vit-b32")
