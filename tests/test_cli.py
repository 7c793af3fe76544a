"""The `mmdemo` command (console script and `python -m mmdemo`), run as users run it."""

import csv
import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
from conftest import QUESTION, ROOT, VQA


def mmdemo_script() -> str:
    """The console script pip installed for this Python (requirements-dev.txt installs the package)."""
    script = Path(sysconfig.get_path("scripts")) / "mmdemo"
    found = str(script) if script.exists() else shutil.which("mmdemo")
    assert found, "the `mmdemo` console script is not installed: pip install -e ."
    return found


def run(*args: str, module: bool = False) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "mmdemo", *args] if module else [mmdemo_script(), *args]
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=180)


def test_python_m_mmdemo_help_lists_the_subcommands():
    done = run("--help", module=True)
    assert done.returncode == 0, done.stderr
    for command in ("serve", "models", "train", "eval", "predict"):
        assert command in done.stdout


@pytest.mark.parametrize(
    ("command", "flags"),
    [
        ("train", ["--preset", "--fusion", "--epochs", "--out"]),
        ("eval", ["--split", "--model", "--limit", "--json"]),
        ("predict", ["--task", "--model", "--question"]),
        ("serve", ["--host", "--port"]),
        ("models", ["--task"]),
    ],
)
def test_every_subcommand_has_help(command, flags):
    done = run(command, "--help")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage: mmdemo " + command)
    for flag in flags:
        assert flag in done.stdout


def test_models_lists_the_catalog():
    done = run("models")
    assert done.returncode == 0, done.stderr
    line = next(line for line in done.stdout.splitlines() if line.startswith("mmdemo-vqa-easy"))
    assert VQA in line and "native" in line and "default" in line
    done = run("models", "--task", "image-to-text")
    assert done.returncode == 0 and "mmdemo-vqa-easy" not in done.stdout


def test_predict_prints_one_json_line_per_input(tiny_checkpoint, examples, tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_text("not an image")
    inputs = [str(examples[0]["image"]), str(examples[1]["image"]), str(bad)]
    done = run("predict", "--task", VQA, "--model", str(tiny_checkpoint), "--question", QUESTION, *inputs)
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    assert [line["input"] for line in lines] == inputs
    for line in lines[:2]:
        result = line["result"]
        assert len(result) == 5 and {"answer", "score"} == set(result[0])
        assert result[0]["score"] >= result[-1]["score"]
    assert "not an image" in lines[2]["error"] and "result" not in lines[2]


def test_predict_captions_a_folder_to_csv(tmp_path):
    out = tmp_path / "captions.csv"
    done = run("predict", "--task", "image-to-text", str(ROOT / "assets" / "examples" / "scenes"), "--out", str(out))
    assert done.returncode == 0, done.stderr
    rows = list(csv.DictReader(out.open()))
    expected = json.loads((ROOT / "assets" / "examples" / "scenes" / "examples.json").read_text())
    assert len(rows) == len(expected)
    by_file = {Path(r["input"]).name: json.loads(r["result"])[0]["generated_text"] for r in rows}
    hits = [by_file[e["image"]] == e["captions"][0].replace(",", "") for e in expected]
    assert sum(hits) >= len(hits) - 1  # the shipped captioner on its own domain


def test_predict_reads_questions_from_a_csv(tiny_checkpoint, examples, tmp_path):
    table = tmp_path / "questions.csv"
    lines = ["image,question"] + [f"{e['image']},{QUESTION}" for e in examples[:3]]
    table.write_text("\n".join(lines) + "\n")
    out = tmp_path / "answers.jsonl"
    done = run("predict", "--task", VQA, "--model", str(tiny_checkpoint), str(table), "--out", str(out))
    assert done.returncode == 0, done.stderr
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["question"] for r in rows] == [QUESTION] * 3 and all(len(r["result"]) == 5 for r in rows)


def test_predict_with_an_unknown_model_fails_listing_the_models(example_image):
    done = run("predict", "--task", VQA, "--model", "no-such-model", "--question", QUESTION, str(example_image))
    assert done.returncode != 0
    assert "no-such-model" in done.stderr and "mmdemo-vqa-easy" in done.stderr
    assert "Traceback" not in done.stderr


def test_unknown_task_fails_listing_the_tasks(example_image):
    done = run("predict", "--task", "no-such-task", str(example_image), module=True)
    assert done.returncode != 0
    assert VQA in done.stderr and "Traceback" not in done.stderr


def test_train_and_eval_through_the_command(tmp_path):
    out = tmp_path / "run"
    done = run("train", "--preset", "tiny", "--epochs", "1", "--limit", "100", "--out", str(out), "--device", "cpu")
    assert done.returncode == 0, done.stderr
    assert (out / "model.safetensors").is_file()
    report = tmp_path / "eval.json"
    done = run("eval", "--model", str(out), "--limit", "50", "--latency-samples", "3", "--json", str(report))
    assert done.returncode == 0, done.stderr
    assert json.loads(report.read_text())["n"] == 50


def test_download_refuses_names_that_are_not_hub_models():
    done = run("download", "mmdemo-vqa-easy", module=True)
    assert done.returncode != 0
    assert "'mmdemo-vqa-easy' is not a hub model" in done.stderr and "Traceback" not in done.stderr


def test_download_offline_says_which_model_could_not_be_fetched(tmp_path):
    catalog = tmp_path / "catalog.toml"
    catalog.write_text(
        '[[model]]\nname = "tiny-hub"\ntasks = ["image-to-text"]\nbackend = "transformers"\n'
        'hub_id = "mmdemo-tests/not-a-real-repo"\nrevision = "0123456789abcdef0123456789abcdef01234567"\n'
    )
    env = {**os.environ, "MMDEMO_CATALOG": str(catalog), "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    done = subprocess.run(
        [sys.executable, "-m", "mmdemo", "download", "tiny-hub"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert done.returncode != 0
    assert "could not download tiny-hub (mmdemo-tests/not-a-real-repo)" in done.stderr
    assert "Traceback" not in done.stderr
