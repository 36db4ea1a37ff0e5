"""``python -m harma_zoo.cli``: what torchrun starts in every process."""

import sys

from harma_zoo.cli import main

sys.exit(main())
