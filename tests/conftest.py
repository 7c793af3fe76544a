"""Shared fixtures: a tiny checkpoint trained in seconds, example images, and small helpers.

Tests never touch the network and, except test_accuracy, never need the shipped checkpoint.
"""

import json
import os
import socket
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "assets" / "examples" / "easy-vqa"
SHIPPED = ROOT / "assets" / "models" / "vqa-easy"
VQA = "visual-question-answering"
# every word here is in the tiny checkpoint's vocabulary (its first 600 training questions)
QUESTION = "what shape is in the image?"


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> Path:
    """A tiny VQA checkpoint folder (config.json, model.safetensors, tokenizer.json), trained for one epoch."""
    from mmdemo import train

    out = tmp_path_factory.mktemp("tiny-vqa")
    train.main(["--preset", "tiny", "--epochs", "1", "--limit", "600", "--out", str(out), "--device", "cpu"])
    return out


@pytest.fixture(scope="session")
def tiny_vqa(tiny_checkpoint):
    """The visual-question-answering pipeline running the tiny checkpoint."""
    import mmdemo

    return mmdemo.pipeline(VQA, model=str(tiny_checkpoint), device="cpu")


@pytest.fixture(scope="session")
def examples() -> list[dict]:
    """The bundled example images with their questions and answers: [{"image": Path, "question", "answer"}]."""
    items = json.loads((EXAMPLES / "examples.json").read_text())
    return [{**it, "image": EXAMPLES / it["image"]} for it in items]


@pytest.fixture(scope="session")
def example_image(examples) -> Path:
    return examples[0]["image"]


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def assert_user_message(message: str, *forbidden: str) -> None:
    """A message fit to show a user: short, no traceback, no exception class names, none of `forbidden`."""
    assert message.strip(), "empty message"
    assert len(message) < 1000, message
    for bad in ("Traceback", 'File "', "Errno", "UnidentifiedImageError", "PIL.", "torch", *forbidden):
        assert bad not in message, f"{bad!r} in user message: {message!r}"
