"""The model zoo: download, verify and cache published checkpoints."""
