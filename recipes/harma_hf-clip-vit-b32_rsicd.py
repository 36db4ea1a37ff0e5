# HarMA on OpenAI CLIP ViT-B/32 through transformers -> RSICD. Not a paper setting: LAION-row settings.
_base_ = [
    "_base_/backbones/hf_clip_vit_b32.py",
    "_base_/methods/harma.py",
    "_base_/datasets/rsicd.py",
    "_base_/schedules/reference.py",
]
schedule = dict(lr=4e-4, epochs=10)
