# GeoRSCLIP ViT-B/32 fine-tuned on RET-2: a plain OpenCLIP state dict for the OpenAI QuickGELU model.
# Fetch RS5M_ViT-B-32_RET-2.pt (hub repo Zilun/GeoRSCLIP, folder ckpt/) into $HARMA_ZOO_WEIGHTS.
backbone = dict(
    type="open_clip",
    arch="ViT-B-32-quickgelu",
    pretrained="{{$HARMA_ZOO_WEIGHTS:weights}}/RS5M_ViT-B-32_RET-2.pt",
)
