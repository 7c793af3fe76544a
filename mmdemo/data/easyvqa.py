"""The easy-VQA dataset (PyPI `easy-vqa`, MIT), read from the installed package: no download."""

import re
from dataclasses import dataclass

import numpy as np
from PIL import Image

SPLITS = ("train", "test")
_SHAPES = r"(circle|rectangle|triangle)"


@dataclass
class EasyVQA:
    images: np.ndarray  # (N_images, 64, 64, 3) uint8
    questions: list[str]  # (Q,)
    answers: list[str]  # (Q,)
    image_index: np.ndarray  # (Q,) row of `images` each question is about
    image_paths: list[str]  # (N_images,) source files, for examples and reports

    def __len__(self) -> int:
        return len(self.questions)


def answer_set() -> list[str]:
    import easy_vqa

    return easy_vqa.get_answers()


def load(split: str, limit: int | None = None) -> EasyVQA:
    """One official split; `limit` keeps the first N questions (and only the images they use)."""
    import easy_vqa

    if split not in SPLITS:
        raise ValueError(f"unknown easy-vqa split {split!r}; choose from {', '.join(SPLITS)}")
    texts, answers, ids = (easy_vqa.get_train_questions if split == "train" else easy_vqa.get_test_questions)()
    paths = (easy_vqa.get_train_image_paths if split == "train" else easy_vqa.get_test_image_paths)()
    if limit is not None:
        texts, answers, ids = texts[:limit], answers[:limit], ids[:limit]
    used = sorted(set(ids))
    row = {image_id: r for r, image_id in enumerate(used)}
    images = np.stack([np.asarray(Image.open(paths[i]).convert("RGB")) for i in used])
    return EasyVQA(images, list(texts), list(answers), np.array([row[i] for i in ids]), [paths[i] for i in used])


def question_type(question: str) -> str:
    """easy-VQA's four templates: what shape / what colour / yes-no on shape / yes-no on colour."""
    q = question.lower()
    if q.startswith("what"):
        return "color" if "color" in q else "shape"
    return "yes/no shape" if re.search(rf"\b{_SHAPES}\b", q) else "yes/no color"
