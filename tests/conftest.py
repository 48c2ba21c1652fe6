import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")


@pytest.fixture(scope="session")
def gray_processor():
    """A one-channel image processor (no resizing), as the embedded ViTs save."""
    from transformers import ViTImageProcessor
    return ViTImageProcessor(do_resize=False, do_rescale=True, do_normalize=True,
                             image_mean=[0.286], image_std=[0.353])
