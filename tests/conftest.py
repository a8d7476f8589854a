import os

import pytest
import torch

# Two cores on CI: keep torch from oversubscribing, and keep denormals from slowing the CPU down.
torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", 0)) or max(1, min(2, os.cpu_count() or 1)))
torch.set_flush_denormal(True)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs CUDA (no GPU on this machine)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _lean_attention(request, monkeypatch):
    """Force the memory-lean attention kernels at every size, except in tests marked ``size_rule``.

    ``softmax_attention`` writes small maps out (``EXPLICIT_MAX_BYTES``); the module tests compare the lean
    kernels with the explicit formulation at small sizes, where the size rule would make both explicit.
    The tests of the size rule itself carry the ``size_rule`` marker and see the real threshold.
    """
    if "size_rule" not in request.keywords:
        from visattn.ops import attention

        monkeypatch.setattr(attention, "EXPLICIT_MAX_BYTES", -1)
