"""bf16 and int8 (dynamic quantisation of the linear and recurrent layers) against fp32 for our VQA model on the whole
easy-VQA test split: throughput, accuracy and agreement.

    python scripts/precision_check.py

int8 is measured, not used: dynamic quantisation scales activations over the whole batch, so one user's answer would
depend on the requests batched with it.

The catalog's `cpu_bf16 = true` for mmdemo-vqa-easy rests on these figures (bf16 runs only where the CPU computes
it natively; elsewhere the model stays fp32).
"""

import dataclasses
import time

import torch
from easy_vqa import get_test_image_paths, get_test_questions

from mmdemo.backends import load_backend
from mmdemo.inputs import clean_question, load_image
from mmdemo.registry import find_model

BATCH = 64


def main() -> None:
    torch.set_num_threads(2)  # the 2-core machines we measure on
    questions, truth, image_ids = get_test_questions()
    paths = get_test_image_paths()
    items = [
        {"image": load_image(paths[i]), "question": clean_question(q)}
        for q, i in zip(questions, image_ids, strict=True)
    ]
    info = find_model("visual-question-answering", "mmdemo-vqa-easy")
    answers = {}
    for dtype in ("float32", "bfloat16", "int8"):
        backend = load_backend(dataclasses.replace(info, dtype="float32" if dtype == "int8" else dtype), "cpu")
        if dtype == "int8":  # weights of Linear and GRU layers in int8, activations quantised on the fly
            backend.model = torch.ao.quantization.quantize_dynamic(backend.model, {torch.nn.Linear, torch.nn.GRU})
        backend(items[:BATCH])  # warm
        start = time.perf_counter()
        out = [r for s in range(0, len(items), BATCH) for r in backend(items[s : s + BATCH], top_k=1)]
        seconds = time.perf_counter() - start
        answers[dtype] = [r[0]["answer"] for r in out]
        accuracy = sum(a == t for a, t in zip(answers[dtype], truth, strict=True)) / len(items)
        print(f"{dtype:9} {len(items) / seconds:6.0f} answers/s (batches of {BATCH})  accuracy {accuracy:.4%}")
    for dtype in ("bfloat16", "int8"):
        same = sum(a == b for a, b in zip(answers["float32"], answers[dtype], strict=True))
        print(f"{dtype} gives fp32's answer for {same} of {len(items)} questions ({same / len(items):.2%})")


if __name__ == "__main__":
    main()
