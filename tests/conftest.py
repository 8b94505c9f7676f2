"""Shared test set-up: offline by default, seeded, GPU tests skipped (or failed under `make test-gpu`)."""

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

try:  # property tests: the same examples on every run (reproducible CI); `--hypothesis-profile=explore`
    from hypothesis import settings  # draws new ones when hunting for bugs

    settings.register_profile("course", derandomize=True, deadline=None)
    settings.register_profile("explore", deadline=None, max_examples=2000)
    settings.load_profile("course")
except ImportError:  # hypothesis is a test dependency; only the property tests need it
    pass


def _cuda() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except ImportError:
        return False


def pytest_runtest_setup(item):
    if "gpu" in item.keywords and not _cuda():
        from utils.env import gpu_required

        if gpu_required():
            pytest.fail("COURSE_REQUIRE_GPU=1 (make test-gpu) but no CUDA GPU is visible to torch")
        pytest.skip("needs a CUDA GPU; none is visible to torch")


@pytest.fixture(autouse=True)
def _seeded():
    """Every test starts from the same RNG state."""
    from utils.env import seed_everything

    seed_everything(0)
    yield


@pytest.fixture(scope="module")
def one_thread():
    """Tiny models gain nothing from a second thread, and lose 5-10x when another process shares the cores.
    A module opts in with ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
