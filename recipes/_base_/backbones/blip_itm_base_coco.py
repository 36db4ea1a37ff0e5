# BLIP ITM base (COCO), used as a dual encoder: its image-text-contrastive path (zoo backbone `blip-itm-base-coco`).
backbone = dict(type="hf_blip", source="zoo:blip-itm-base-coco")
