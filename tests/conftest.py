"""Shared fixtures: a tiny checkpoint trained in seconds, example images, and small helpers.

Tests never touch the network and, except test_accuracy, never need the shipped checkpoint.
"""

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import wave
from pathlib import Path

import numpy as np
import pytest

SLOW = os.environ.get("MMDEMO_SLOW") == "1"  # run the `slow` tests: real hub checkpoints, with network
if not SLOW:
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


def get_json(url: str) -> tuple[int, dict]:
    """GET a JSON route of the app: (status, body), error statuses included."""
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


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


# espeak-ng's US voice with a male variant, a little slower than its default 175 words a minute and with short pauses
# between words: of the voices tried, the one Whisper tiny.en follows best (robotic speech is harder than a person's)
VOICE = ("-v", "en-us+m3", "-s", "150", "-g", "5")
LEAD_IN_S = 0.4  # silence before the first word, as a recording has; without it tiny.en drops first words more often


def read_wav(path: Path) -> tuple[int, np.ndarray]:
    """A 16-bit WAV -> (rate, (n,) or (n, channels) int16 samples)."""
    with wave.open(str(path)) as f:
        samples = np.frombuffer(f.readframes(f.getnframes()), "<i2")
        rate, channels = f.getframerate(), f.getnchannels()
    return rate, samples.reshape(-1, channels) if channels > 1 else samples


def write_wav(path: Path, rate: int, samples: np.ndarray) -> Path:
    with wave.open(str(path), "wb") as f:
        f.setnchannels(1 if samples.ndim == 1 else samples.shape[1])
        f.setsampwidth(2)
        f.setframerate(rate)
        f.writeframes(samples.astype("<i2").tobytes())
    return path


@pytest.fixture(scope="session")
def speak(tmp_path_factory):
    """speak(text) -> a 16-bit mono WAV file of espeak-ng saying it, after LEAD_IN_S of silence."""
    if shutil.which("espeak-ng") is None:
        pytest.fail("these tests need espeak-ng to make speech: `apt-get install -y espeak-ng` (Debian)")
    folder = tmp_path_factory.mktemp("speech")

    def speak(text: str) -> Path:
        path = folder / (text.replace(" ", "-") + ".wav")
        subprocess.run(["espeak-ng", *VOICE, "-w", str(path), text], check=True, capture_output=True)
        rate, samples = read_wav(path)
        return write_wav(path, rate, np.concatenate([np.zeros(int(LEAD_IN_S * rate), np.int16), samples]))

    return speak


def pytest_collection_modifyitems(config, items):
    """`slow` tests run with MMDEMO_SLOW=1 (they download real checkpoints); `gpu` tests where CUDA is."""
    import torch

    for item in items:
        if "slow" in item.keywords and not SLOW:
            item.add_marker(
                pytest.mark.skip(reason="real hub checkpoints: set MMDEMO_SLOW=1 where the hub is reachable")
            )
        if "gpu" in item.keywords and not torch.cuda.is_available():
            item.add_marker(pytest.mark.skip(reason="needs a CUDA device"))


def _postgres_bin() -> Path | None:
    """The folder holding initdb and pg_ctl: on PATH, else Debian's newest /usr/lib/postgresql/<version>/bin."""
    on_path = shutil.which("pg_ctl")
    debian = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"), key=lambda p: int(p.parts[-3]))
    for pg_ctl in ([Path(on_path).resolve()] if on_path else []) + debian[::-1]:
        if (pg_ctl.parent / "initdb").exists() and (pg_ctl.parent / "createdb").exists():
            return pg_ctl.parent
    return None


@pytest.fixture(scope="session")
def postgres_url():
    """A PostgreSQL URL (postgresql+psycopg://...) to an empty database, for the feedback-store tests.

    Env MMDEMO_TEST_POSTGRES_URL names a server to use. Otherwise a throwaway cluster is started (initdb, pg_ctl)
    listening only on a unix socket in a private temporary folder, and stopped at the end of the session. initdb refuses
    to run as root, so as root the cluster belongs to the `postgres` user (runuser). Without PostgreSQL installed the
    tests skip, except in CI (env CI), where they fail: CI must test both databases.
    """
    if url := os.environ.get("MMDEMO_TEST_POSTGRES_URL"):
        yield url
        return
    bin_dir = _postgres_bin()
    if bin_dir is None:
        message = "PostgreSQL is not installed: `apt-get install -y postgresql` or set MMDEMO_TEST_POSTGRES_URL"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    as_owner: list[str] = []
    folder = Path(tempfile.mkdtemp(prefix="mmdemo-pg-"))  # in /tmp, which the postgres user can reach
    if os.geteuid() == 0:
        assert shutil.which("runuser"), "running as root needs runuser to start PostgreSQL as the postgres user"
        as_owner = ["runuser", "-u", "postgres", "--"]
        shutil.chown(folder, "postgres", "postgres")
    data, port = folder / "data", free_port()

    def run(*command: str) -> None:
        done = subprocess.run([*as_owner, *command], capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, f"{command[0]} failed:\n{done.stdout}\n{done.stderr}"

    run(str(bin_dir / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync")
    # no TCP at all: only the socket in `folder` (mode 0700, the cluster owner's), so nobody else can connect
    options = f"-c listen_addresses='' -c unix_socket_directories='{folder}' -p {port} -c max_connections=200"
    run(str(bin_dir / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(folder / "log"), "-w", "-t", "60", "start")
    try:
        run(str(bin_dir / "createdb"), "-h", str(folder), "-p", str(port), "-U", "postgres", "mmdemo_test")
        yield f"postgresql+psycopg://postgres@/mmdemo_test?host={folder}&port={port}"
    finally:
        run(str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(folder, ignore_errors=True)


@contextlib.contextmanager
def served_app(home: Path, **env: str):
    """`python app.py` as a user starts it, on a free loopback port, with `env` added (its log in home/server.log);
    yields its URL (no trailing slash) once /healthz answers, and stops it afterwards."""
    port = free_port()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", **env}
    with open(home / "server.log", "w") as log:
        command = [sys.executable, "app.py", "--port", str(port)]
        server = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        url = f"http://127.0.0.1:{port}"
        try:
            end = time.time() + 90
            while True:
                try:
                    urllib.request.urlopen(url + "/healthz", timeout=2)
                    break
                except OSError:
                    if server.poll() is not None or time.time() > end:
                        raise RuntimeError(
                            f"the app did not start: {(home / 'server.log').read_text()[-2000:]}"
                        ) from None
                    time.sleep(0.3)
            yield url
        finally:
            server.terminate()
            server.wait(15)
