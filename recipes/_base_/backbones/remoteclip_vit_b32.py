# RemoteCLIP ViT-B/32: a plain OpenCLIP state dict (hub repo chendelong/RemoteCLIP).
backbone = dict(
    type="open_clip",
    arch="ViT-B-32-quickgelu",
    pretrained="{{$HARMA_ZOO_WEIGHTS:weights}}/RemoteCLIP-ViT-B-32.pt",
)
