# OpenAI CLIP ViT-B/32 through Hugging Face transformers.
backbone = dict(type="hf_clip", source="openai/clip-vit-base-patch32")
