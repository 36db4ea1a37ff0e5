# RemoteCLIP ViT-L/14: a plain OpenCLIP state dict (hub repo chendelong/RemoteCLIP).
backbone = dict(
    type="open_clip",
    arch="ViT-L-14-quickgelu",
    pretrained="{{$HARMA_ZOO_WEIGHTS:weights}}/RemoteCLIP-ViT-L-14.pt",
)
