import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DATA_DIR = Path(os.environ.get("SRPO_DATA_DIR", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def tiny_tokenizer():
    from srpo_ref.tiny import train_tokenizer

    return train_tokenizer()


@pytest.fixture(scope="session")
def tiny_base(tmp_path_factory):
    """A tiny base checkpoint with a short warm-up (enough for the code paths, not for skill)."""
    from srpo_ref.tiny import warmup

    out = tmp_path_factory.mktemp("tiny_base")
    warmup(out, steps=40, batch_size=32, eval_accuracy=False)
    return out
