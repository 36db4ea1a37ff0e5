# Full fine-tuning of both towers, with HarMA's loss.
method = dict(type="full")
loss = dict(type="harma")
