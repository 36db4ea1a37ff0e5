"""Per-sample random streams, so that augmentation does not depend on process layout.

A sample's augmentation is drawn from a generator seeded by (seed, epoch, index).
The same sample then gets the same pixels whether it is loaded by one process or
two, by the main process or a worker, in an uninterrupted run or after a resume.
That makes "2 processes x batch b == 1 process x batch 2b" and exact resume hold.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset


@contextmanager
def isolated_random_state(seed: int) -> Iterator[None]:
    """Seed Python, NumPy and torch (CPU) for a block, then restore their states."""
    python_state, numpy_state = random.getstate(), np.random.get_state()
    with torch.random.fork_rng(devices=[]):
        random.seed(seed)
        np.random.seed(seed % 2**32)
        torch.manual_seed(seed)
        try:
            yield
        finally:
            random.setstate(python_state)
            np.random.set_state(numpy_state)


def sample_seed(seed: int, epoch: int, index: int) -> int:
    return ((seed * 1_000_003 + epoch) * 1_000_003 + index) % 2**63


class SeededSamples(Dataset):
    """Wraps a dataset so that ``dataset[i]`` draws its randomness from (seed, epoch, i).

    ``set_epoch`` is called before each epoch's loader iterator is made, so worker
    processes (not persistent) receive the new epoch with their copy of the dataset.
    """

    def __init__(self, dataset: Dataset, seed: int) -> None:
        self.dataset = dataset
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> Any:
        with isolated_random_state(sample_seed(self.seed, self.epoch, index)):
            return self.dataset[index]
