"""Test setup: make the repository importable and keep torch to the machine's two cores."""
import os
import sys

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)
# Outputs of the released implementation: ../shared/reference next to the clone, or $GRAM_REFERENCE_DIR.
REFERENCE_DIR = os.environ.get('GRAM_REFERENCE_DIR', os.path.join(os.path.dirname(ROOT), 'shared', 'reference'))

torch.set_num_threads(min(2, os.cpu_count() or 1))
