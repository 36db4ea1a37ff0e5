# Stage 2 of the CPU transfer benchmark, without its method: the tiny ViT pretrained on RSICD's source
# classes (zoo backbone harma-tiny-vit-rsicd-source), fine-tuned on the WHOLE RSICD training split (all
# 30 classes and the images without one), selected and reported on the validation split. One schedule
# for every method (the parameter-efficient ones set a higher lr). The `*_tiny-vit-rsicd-source_rsicd`
# recipes add a method each; `make transfer` runs them all (`harma-zoo bench --preset rsicd-transfer`).
_base_ = [
    "../backbones/tiny_vit_rsicd_source.py",
    "../datasets/rsicd.py",
    "../schedules/cpu_small.py",
]
# One epoch, the budget each method's rate was chosen for by its grid (below): the grid (82 min two at a time) and
# 3 seeds x 5 methods at one epoch (41 min) keep the benchmark within its 3 CPU hours.
schedule = dict(epochs=1, batch_size=64, lr=5e-4, warmup_ratio=0.05, num_workers=2, val_interval=1, log_interval=100)
# `harma-zoo bench --preset rsicd-transfer-tune`: each rate trained one epoch (the recipe's seed, 3407), chosen on
# val mR; rates within 0.1 mR of the best count as tied and the lowest of them is chosen. The grid spans 30x
# around `full`'s 5e-4 and one step beyond it upwards; each method's recipe states its chosen rate.
tuning = dict(lrs=[1.5e-4, 5e-4, 1.5e-3, 4.5e-3], epochs=1, tolerance=0.1)
