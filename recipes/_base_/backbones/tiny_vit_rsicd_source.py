# The tiny OpenCLIP ViT pretrained here on the source half of RSICD's scene classes (recipe
# pretrain_tiny-vit_rsicd-source): zoo backbone `harma-tiny-vit-rsicd-source`, its weights file
# shipped in zoo_files/ and fetched (sha256-checked) into the zoo cache when the backbone is built.
backbone = dict(type="open_clip", arch="harma-tiny-vit", pretrained="zoo:harma-tiny-vit-rsicd-source")
