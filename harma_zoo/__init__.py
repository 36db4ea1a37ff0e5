"""harma-zoo: HarMA-style parameter-efficient transfer for any dual-encoder vision-language model."""

__version__ = "0.1.0"
