# A short schedule for CPUs: small batches, few epochs, reference optimiser settings.
_base_ = ["./reference.py"]
schedule = dict(epochs=3, batch_size=32, lr=1e-3, num_workers=2, val_batch_size=128, log_interval=20)
