"""Benchmarks of harma-zoo (CPU): run with ``make bench``; each measurement runs in its own subprocess."""
