# HarMA as released by its authors: the shared module runs in the text tower only. The sizes (bottleneck,
# shared_width, heads) are left to the method, which scales them to the towers' width: the paper's
# 128 / 64 / 8 on 768-wide towers, 16 / 8 / 1 on the 64-wide tiny ViT (harma_zoo.methods.harma.sizes_for_width).
method = dict(type="harma", gate_init=0.6, shared_towers=("text",))
loss = dict(type="harma", temperature=0.07, margin=0.2, gamma=2.0, mask_same_image=False)
