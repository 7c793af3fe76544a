"""Training and evaluation end to end on a tiny slice of easy-VQA, on CPU, in seconds."""

import json

import pytest
from conftest import QUESTION, VQA

import mmdemo
from mmdemo import evaluate, train
from mmdemo.data import easyvqa


def test_training_writes_a_checkpoint_the_pipeline_answers_with(tiny_checkpoint, example_image):
    assert {p.name for p in tiny_checkpoint.iterdir()} == {"config.json", "model.safetensors", "tokenizer.json"}
    meta = json.loads((tiny_checkpoint / "config.json").read_text())
    assert meta["architecture"] == "mmdemo-vqa"
    assert meta["config"]["answers"] == easyvqa.answer_set()
    assert meta["training"]["epochs"] == 1 and meta["training"]["limit"] == 600
    assert 0.0 <= meta["training"]["train_accuracy"] <= 1.0

    vqa = mmdemo.pipeline(VQA, model=str(tiny_checkpoint), device="cpu")
    result = vqa(str(example_image), QUESTION, top_k=3)
    assert len(result) == 3 and all(r["answer"] in easyvqa.answer_set() for r in result)


@pytest.mark.parametrize(("fusion", "rnn"), [("concat", "lstm"), ("product", "gru")])
def test_training_options_reach_the_checkpoint(tmp_path, example_image, fusion, rnn):
    out = tmp_path / "run"
    report = train.main(
        [
            "--preset",
            "tiny",
            "--epochs",
            "2",
            "--limit",
            "150",
            "--batch-size",
            "16",
            "--device",
            "cpu",
            "--fusion",
            fusion,
            "--rnn",
            rnn,
            "--optimizer",
            "adamw",
            "--out",
            str(out),
        ]
    )
    assert report["epochs"] == 2 and 0.0 <= report["train_accuracy"] <= 1.0
    config = json.loads((out / "config.json").read_text())["config"]
    assert (config["fusion"], config["rnn"]) == (fusion, rnn)
    result = mmdemo.pipeline(VQA, model=str(out), device="cpu")(str(example_image), QUESTION, top_k=1)
    assert len(result) == 1


def test_evaluate_writes_the_contract_report(tiny_checkpoint, tmp_path, capsys):
    path = tmp_path / "eval.json"
    returned = evaluate.main(
        [
            "--task",
            VQA,
            "--dataset",
            "easy-vqa",
            "--split",
            "test",
            "--model",
            str(tiny_checkpoint),
            "--limit",
            "300",
            "--latency-samples",
            "20",
            "--device",
            "cpu",
            "--json",
            str(path),
        ]
    )
    report = json.loads(path.read_text())
    assert report == returned
    assert json.loads(capsys.readouterr().out) == report  # also printed
    assert report["task"] == VQA and report["dataset"] == "easy-vqa" and report["split"] == "test"
    assert report["model"] == tiny_checkpoint.name
    assert report["n"] == 300
    metrics = report["metrics"]
    for key in ("accuracy", "macro_f1"):
        assert isinstance(metrics[key], float) and 0.0 <= metrics[key] <= 1.0
    assert metrics["errors"] == round((1 - metrics["accuracy"]) * 300)
    latency = report["latency_ms"]
    assert set(latency) >= {"p50", "p95"}
    assert 0.0 < latency["p50"] <= latency["p95"]
