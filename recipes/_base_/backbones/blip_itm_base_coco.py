# BLIP ITM base (COCO), used as a dual encoder: its image-text-contrastive path.
backbone = dict(type="hf_blip", source="Salesforce/blip-itm-base-coco")
