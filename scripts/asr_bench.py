"""Measure the offline speech recognizer on questions spoken by espeak-ng: load time, latency, exact-match rate.

    python scripts/asr_bench.py [--lead-in 0.4] [--runs 5]

Needs Debian's espeak-ng. Two question sets: the bundled easy-VQA examples' questions (as written, "?" included)
and easy-VQA-style questions without punctuation. A transcript matches when, lower-cased and without
punctuation, it equals the question.
"""

import argparse
import json
import re
import statistics
import subprocess
import tempfile
import time
import wave
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
VOICE = ("-v", "en-us+m3", "-s", "150", "-g", "5")  # as tests/test_asr.py speaks
STYLE_QUESTIONS = [
    "what color is the circle",
    "is there a red shape",
    "what shape is in the image",
    "is there a blue triangle",
    "what color is the rectangle",
    "does the image contain a green circle",
    "what is the shape",
    "is the shape yellow",
    "is there a black square",
    "is there a gray rectangle",
]


def words(text: str) -> str:
    return " ".join(re.sub(r"[^a-z0-9' ]", " ", text.lower()).split())


def speak(text: str, lead_in_s: float) -> tuple[int, np.ndarray]:
    """espeak-ng saying `text` -> (rate, int16 samples), after `lead_in_s` of silence."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "speech.wav"
        subprocess.run(["espeak-ng", *VOICE, "-w", str(path), text], check=True, capture_output=True)
        with wave.open(str(path)) as f:
            rate, samples = f.getframerate(), np.frombuffer(f.readframes(f.getnframes()), "<i2")
    return rate, np.concatenate([np.zeros(int(lead_in_s * rate), np.int16), samples])


def accuracy(asr, questions: list[str], lead_in_s: float) -> tuple[float, list[tuple[str, str]]]:
    misses = []
    for q in questions:
        text = asr(speak(q, lead_in_s))["text"]
        if words(text) != words(q):
            misses.append((q, text))
    return 1 - len(misses) / len(questions), misses


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--lead-in", type=float, default=0.4, help="seconds of silence before each question")
    parser.add_argument("--runs", type=int, default=5, help="timed transcriptions of each latency clip")
    args = parser.parse_args(argv)

    start = time.perf_counter()
    import mmdemo

    asr = mmdemo.pipeline("automatic-speech-recognition")
    print(f"load (import + verify + build): {time.perf_counter() - start:.2f} s")

    clip = speak("what color is the circle", args.lead_in)
    asr(clip)  # warm-up
    times = []
    for _ in range(args.runs):
        t = time.perf_counter()
        asr(clip)
        times.append(time.perf_counter() - t)
    print(f"latency, {len(clip[1]) / clip[0]:.2f} s question: p50 {statistics.median(times) * 1000:.0f} ms")

    examples = [e["question"] for e in json.loads((ROOT / "assets/examples/easy-vqa/examples.json").read_text())]
    for name, questions in (("easy-VQA examples", examples), ("easy-VQA-style, no punctuation", STYLE_QUESTIONS)):
        rate, misses = accuracy(asr, questions, args.lead_in)
        print(f"{name}: exact match {rate:.0%} of {len(questions)}; misses: {misses}")


if __name__ == "__main__":
    main()
