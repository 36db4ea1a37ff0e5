# HarMA as released by its authors: the shared module runs in the text tower only.
method = dict(type="harma", bottleneck=128, shared_width=64, heads=8, gate_init=0.6, shared_towers=("text",))
loss = dict(type="harma", temperature=0.07, margin=0.2, gamma=2.0, mask_same_image=False)
