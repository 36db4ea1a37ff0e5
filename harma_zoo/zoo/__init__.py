"""The model zoo: the registry of backbones and adapter checkpoints, downloads, publishing and cards.

``index`` (registry/*.yaml as checked dataclasses), ``catalog`` (rows for ``harma-zoo list``),
``fetch`` (verified, resumable downloads into the cache), ``download`` (fetch a registry entry),
``publish`` (add a trained checkpoint), ``cards`` (generated model cards), ``convert`` (HarMA
reference checkpoints).
"""
