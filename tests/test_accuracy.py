"""The shipped default model (assets/models/vqa-easy) on the full official easy-VQA test split."""

from conftest import SHIPPED, VQA

import mmdemo
from mmdemo.data import easyvqa

TARGET = 0.998
TEST_QUESTIONS = 9_673  # the official test split


def test_shipped_model_accuracy_on_the_full_test_split():
    assert (SHIPPED / "model.safetensors").is_file(), f"the shipped checkpoint is missing: {SHIPPED}"
    vqa = mmdemo.pipeline(VQA)  # the task's default: the catalog's mmdemo-vqa-easy
    assert vqa.info.name == "mmdemo-vqa-easy"
    vqa.batch_size = 256  # as `mmdemo eval` runs it: bigger batches share each question's encoding more
    data = easyvqa.load("test")
    assert len(data) == TEST_QUESTIONS
    images = [data.images[i] for i in data.image_index]
    predictions = [r[0]["answer"] for r in vqa(images, data.questions, top_k=1)]
    wrong = [(q, a, p) for q, a, p in zip(data.questions, data.answers, predictions, strict=True) if p != a]
    accuracy = 1 - len(wrong) / len(data)
    assert accuracy >= TARGET, f"accuracy {accuracy:.4f} < {TARGET}; {len(wrong)} wrong, e.g. {wrong[:5]}"
