import os

import pytest
import torch

# Unit tests run on the CPU with few threads: fast and reproducible on the 2-core CI machine.
torch.set_num_threads(min(2, os.cpu_count() or 1))


@pytest.fixture(autouse=True)
def _restore_threads():
    """A test (or the CLI it runs with --threads) may change torch's thread count: put it back after."""
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
