"""Test setup: make the repository importable, keep torch to two threads, and mark CUDA-only tests.

Tests marked `@pytest.mark.cuda` need a CUDA device; they run whenever one is visible and are
reported as skipped (with the reason) elsewhere.
"""
import os
import sys

import pytest
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
for path in (ROOT, os.path.dirname(os.path.abspath(__file__))):
    if path not in sys.path:
        sys.path.insert(0, path)

torch.set_num_threads(min(2, os.cpu_count() or 1))


def pytest_configure(config):
    config.addinivalue_line('markers', 'cuda: needs a CUDA device (runs automatically when one is visible)')


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason='needs a CUDA device')
    for item in items:
        if 'cuda' in item.keywords:
            item.add_marker(skip)
