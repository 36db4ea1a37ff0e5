# A plain bottleneck adapter on every MLP branch, with HarMA's loss (a baseline).
method = dict(type="adapter", bottleneck=64)
loss = dict(type="harma")
