# The reference training settings (the HarMA paper's settings; docs/recipes.md). batch_size is per process:
# on N processes use 428 // N, or accumulate gradients, to keep the global batch of 428.
schedule = dict(
    epochs=10,
    batch_size=428,
    accumulation=1,
    lr=4e-4,
    weight_decay=0.04,
    betas=(0.9, 0.98),
    eps=1e-8,
    warmup_ratio=0.1,
    decay="linear",
    amp=False,
    seed=3407,
    num_workers=4,
    val_interval=1,
    val_batch_size=256,
    log_interval=10,
)
