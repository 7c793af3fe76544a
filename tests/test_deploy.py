"""Deployment: the Dockerfile and .dockerignore (there is no Docker here: they are read, and the image's files are
served as the image would serve them), the Hugging Face Spaces configuration, ZeroGPU's decorator and the feedback
store's place on a Space."""

import argparse
import inspect
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
import tomllib
import types
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from conftest import ROOT, free_port

from mmdemo import zerogpu
from mmdemo.cli import add_serve_args, build_parser
from mmdemo.feedback import store
from mmdemo.registry import catalog

DOCKERFILE = ROOT / "Dockerfile"
CPU_INDEX = "https://download.pytorch.org/whl/cpu"


# --- reading a Dockerfile and a .dockerignore ---------------------------------------------------------------------


def instructions(path: Path = DOCKERFILE) -> list[tuple[str, str]]:
    """(KEYWORD, arguments) per instruction: continuation lines joined, comment lines dropped (as Docker does)."""
    out, current = [], ""
    for line in path.read_text().splitlines():
        if line.strip().startswith("#") or not (line.strip() or current):
            continue
        if line.rstrip().endswith("\\"):
            current += line.rstrip()[:-1] + " "
            continue
        keyword, _, rest = (current + line).strip().partition(" ")
        out.append((keyword.upper(), rest.strip()))
        current = ""
    return out


def args_of(keyword: str) -> list[str]:
    return [rest for k, rest in instructions() if k == keyword]


def build_args() -> dict[str, str]:
    return dict(arg.partition("=")[::2] for arg in args_of("ARG"))


def image_env() -> dict[str, str]:
    """The image's ENV, with $NAME and ${NAME} replaced by earlier values as Docker does."""
    env: dict[str, str] = {}
    for token in (token for rest in args_of("ENV") for token in shlex.split(rest)):
        name, _, value = token.partition("=")
        env[name] = re.sub(r"\$\{?(\w+)\}?", lambda m: env.get(m.group(1), ""), value)
    return env


def copies() -> list[tuple[list[str], str]]:
    """(sources, destination) of every COPY, its --flags left out."""
    out = []
    for rest in args_of("COPY"):
        words = [w for w in shlex.split(rest) if not w.startswith("--")]
        out.append((words[:-1], words[-1]))
    return out


def _pattern(pattern: str) -> re.Pattern:
    """A .dockerignore pattern (Go's filepath.Match, plus ** for any number of folders) as a regex for a path."""
    out, i = "", 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        else:
            c = pattern[i]
            out += "[^/]*" if c == "*" else "[^/]" if c == "?" else c if c in "[]" else re.escape(c)
            i += 1
    return re.compile(out)


def dockerignore() -> list[tuple[bool, re.Pattern]]:
    """(excludes, pattern) per line: a `!` line includes again what an earlier line excluded."""
    rules = []
    for line in (ROOT / ".dockerignore").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keep = line.startswith("!")
            rules.append((not keep, _pattern(line.lstrip("!").strip("/"))))
    return rules


def ignored(path: str, rules=None) -> bool:
    """Whether Docker leaves `path` (relative to the context) out: the last rule matching it or a folder above it."""
    rules = dockerignore() if rules is None else rules
    parts = path.strip("/").split("/")
    prefixes = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    verdict = False
    for excludes, pattern in rules:
        if any(pattern.fullmatch(p) for p in prefixes):
            verdict = excludes
    return verdict


def tracked(under: str) -> list[str]:
    done = subprocess.run(["git", "ls-files", under], cwd=ROOT, capture_output=True, text=True, check=True)
    return done.stdout.split()


def requirement_pin(name: str) -> str:
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        match = re.fullmatch(rf"{name}==([\w.]+)", line.split("#")[0].strip())
        if match:
            return match.group(1)
    raise AssertionError(f"requirements.txt pins no {name}")


# --- the Dockerfile ---------------------------------------------------------------------------------------------


def test_the_image_runs_python_app_py_as_a_non_root_user():
    steps = instructions()
    assert steps[0] == ("FROM", "python:3.11-slim")
    users = [(i, rest) for i, (k, rest) in enumerate(steps) if k == "USER"]
    cmd = max(i for i, (k, _) in enumerate(steps) if k == "CMD")
    assert users and users[-1][0] < cmd, "no USER before CMD: the app would run as root"
    assert users[-1][1].split(":")[0] not in ("root", "0")
    run = " ".join(args_of("RUN"))
    assert f"useradd --create-home --uid 1000 {users[-1][1]}" in run  # uid 1000: what Docker Spaces expect too
    assert json.loads(args_of("CMD")[-1]) == ["python", "app.py"]
    assert (ROOT / "app.py").is_file() and "/app" in args_of("WORKDIR")
    assert args_of("EXPOSE") == ["7860"]


def test_the_image_serves_on_every_interface_on_port_7860(monkeypatch):
    env = image_env()
    assert env["GRADIO_SERVER_NAME"] == "0.0.0.0"
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    args = add_serve_args(argparse.ArgumentParser()).parse_args([])  # what `python app.py` does with the image's env
    assert (args.host, args.port) == ("0.0.0.0", 7860)


def test_torch_is_the_cpu_build_pinned_like_requirements_and_installed_first():
    arg = build_args()
    assert arg["TORCH_INDEX"] == CPU_INDEX
    assert arg["TORCH_VERSION"] == requirement_pin("torch")
    runs = args_of("RUN")
    torch = next(i for i, r in enumerate(runs) if "torch==" in r)
    assert '--index-url "$TORCH_INDEX" "torch==$TORCH_VERSION"' in runs[torch]
    requirements = next(i for i, r in enumerate(runs) if "-r requirements.txt" in r)
    assert torch < requirements, "requirements.txt first would pull torch's default (CUDA) build from PyPI"


def test_the_healthcheck_asks_healthz_and_the_feedback_database_is_on_the_volume():
    (check,) = args_of("HEALTHCHECK")
    assert " CMD " in f" {check} " and "/healthz" in check and "MMDEMO_PORT" in check
    env = image_env()
    assert args_of("VOLUME") == ['["/data"]'] and env["MMDEMO_DATA_DIR"] == "/data"
    assert "MMDEMO_FEEDBACK_DB" not in env  # the default file under MMDEMO_DATA_DIR; set at run time for PostgreSQL
    assert "chown app:app /app /data" in " ".join(args_of("RUN"))  # a fresh named volume takes /data's owner


def test_hub_models_are_baked_in_at_build_time_by_the_app_user():
    steps = instructions()
    download = next(i for i, (k, r) in enumerate(steps) if k == "RUN" and "mmdemo download $MODELS" in r)
    assert max(i for i, (k, _) in enumerate(steps) if k == "USER") < download  # the cache belongs to the app user
    assert build_args()["MODELS"] == '""' and image_env()["HF_HOME"].startswith("/opt/")
    assert build_parser().parse_args(["download", "blip-vqa-base"]).func.__name__ == "_download"


def test_every_copied_file_exists_and_none_is_dockerignored():
    sources = [s for srcs, _ in copies() for s in srcs]
    assert {"requirements.txt", "app.py", "mmdemo", "assets"} <= set(sources)
    for source in sources:
        assert (ROOT / source).exists(), f"COPY {source}: not in the repository"
        assert not ignored(source), f"COPY {source}: .dockerignore leaves it out of the build context"
        left_out = [f for f in tracked(source) if ignored(f)]
        assert not left_out, f"tracked files the image would lack: {left_out[:5]}"


def test_dockerignore_keeps_history_local_runs_caches_and_feedback_out():
    for path in (
        ".git/HEAD",
        "runs/vqa/model.safetensors",
        "test-artifacts/browser.png",
        ".whl/easy_vqa-1.0-py3-none-any.whl",
        "mmdemo/__pycache__/ui.cpython-311.pyc",
        ".pytest_cache/v/cache/lastfailed",
        "feedback.db",
        "data/feedback.db-wal",
        "exports/feedback_media/0a1b.png",
        ".env",
    ):
        assert ignored(path), path
    for path in ("app.py", "mmdemo/catalog.toml", "assets/models/vqa-easy/model.safetensors", "requirements.txt"):
        assert not ignored(path), path
    rules = [(True, _pattern("runs")), (False, _pattern("runs/keep"))]  # the matcher itself: a `!` line wins later
    assert ignored("runs/x", rules) and not ignored("runs/keep/y", rules)


def build_context(into: Path) -> Path:
    """The files the image holds at its WORKDIR, copied from the repository as the Dockerfile and .dockerignore say."""
    app, rules = into / "app", dockerignore()
    for sources, destination in copies():
        for source in sources:
            src = ROOT / source
            files = [src] if src.is_file() else sorted(p for p in src.rglob("*") if p.is_file())
            for file in files:
                if ignored(file.relative_to(ROOT).as_posix(), rules):
                    continue
                target = app / destination / (file.name if src.is_file() else file.relative_to(src))
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(file, target)
    return app


def test_the_image_files_serve_the_app_and_pass_the_healthcheck(tmp_path):
    """python app.py from a copy of exactly the files the image gets, with the image's environment: /healthz, the
    HEALTHCHECK command itself, /readyz (models and feedback store) and the database on the data volume."""
    app = build_context(tmp_path)
    imported = subprocess.run(
        [sys.executable, "-c", "import mmdemo; print(mmdemo.__file__)"], cwd=app, capture_output=True, text=True
    )
    assert imported.stdout.strip() == str(app / "mmdemo" / "__init__.py"), imported.stderr
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MMDEMO_")}
    env.update(image_env())
    env.update(
        MMDEMO_HOST="127.0.0.1",  # the image binds 0.0.0.0 (checked above); a test listens on loopback only
        MMDEMO_PORT=str(port),
        MMDEMO_DATA_DIR=str(tmp_path / "data"),
        HF_HOME=str(tmp_path / "huggingface"),
        HF_HUB_OFFLINE="1",
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
    )
    url, healthcheck = f"http://127.0.0.1:{port}", args_of("HEALTHCHECK")[0].split(" CMD ", 1)[1]
    with open(tmp_path / "server.log", "w") as log:
        server = subprocess.Popen([sys.executable, "app.py"], cwd=app, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        ready, end = None, time.time() + 120
        while ready is None:
            try:
                ready = json.load(urllib.request.urlopen(url + "/readyz", timeout=2))
            except urllib.error.HTTPError as e:  # 503: still loading, or something is missing
                problems = json.load(e)["problems"]
                assert problems == {"models": "still loading"} and time.time() < end, problems
                time.sleep(0.5)
            except OSError:  # not listening yet
                assert server.poll() is None and time.time() < end, (tmp_path / "server.log").read_text()[-2000:]
                time.sleep(0.5)
        assert ready == {"ready": True, "problems": {}}
        assert subprocess.run(["sh", "-c", healthcheck], env=env, timeout=30).returncode == 0
        assert (tmp_path / "data" / "feedback.db").is_file()
    finally:
        server.terminate()
        server.wait(15)
    # nothing listens there now: the same check fails
    assert subprocess.run(["sh", "-c", healthcheck], env=env, timeout=30, capture_output=True).returncode != 0


# --- Hugging Face Spaces ----------------------------------------------------------------------------------------

COLORS = {"red", "yellow", "green", "blue", "indigo", "purple", "pink", "gray"}


def space_config(readme: str) -> dict | None:
    """The YAML front matter Spaces reads at the top of README.md, or None."""
    import yaml

    match = re.match(r"---\n(.*?)\n---\n", readme, re.S)
    return yaml.safe_load(match.group(1)) if match else None


def check_space_config(config: dict) -> None:
    assert config["sdk"] == "gradio" and config["sdk_version"] == requirement_pin("gradio")
    assert (ROOT / config["app_file"]).is_file() and "\ndemo = " in (ROOT / config["app_file"]).read_text()
    requires = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    assert str(config["python_version"]).startswith("3.11") and requires == ">=3.11"
    assert config["license"] == "mit" and {config["colorFrom"], config["colorTo"]} <= COLORS
    assert len(config["short_description"]) <= 60
    recommended = {m.hub_id for m in catalog() if m.recommended and m.hub_id}
    assert set(config.get("preload_from_hub", [])) <= recommended


def test_readme_front_matter_configures_the_space():
    config = space_config((ROOT / "README.md").read_text())
    if config is None:
        pytest.skip("README.md has no Spaces front matter yet")
    check_space_config(config)


# --- ZeroGPU ----------------------------------------------------------------------------------------------------


def answer(image, question="what shape?"):
    return f"{image}: {question}"


def stream(image):
    yield from ("a", "a circle")


def fake_spaces(calls: list) -> types.ModuleType:
    """Stands for the `spaces` package, which works only on a ZeroGPU Space: records each GPU(duration)(fn)."""
    import functools

    def GPU(task=None, *, duration=None):
        def decorate(fn):
            @functools.wraps(fn)
            def on_gpu(*args, **kwargs):
                return fn(*args, **kwargs)

            calls.append((fn, duration, on_gpu))
            return on_gpu

        return decorate if task is None else decorate(task)

    return types.SimpleNamespace(GPU=GPU)


@pytest.mark.parametrize("flag", [None, "1", "true"])
def test_gpu_is_the_identity_without_the_spaces_package(monkeypatch, flag):
    monkeypatch.setitem(sys.modules, "spaces", None)  # `import spaces` raises ImportError
    if flag is None:
        monkeypatch.delenv(zerogpu.ENV, raising=False)
    else:
        monkeypatch.setenv(zerogpu.ENV, flag)
    assert zerogpu.gpu(answer) is answer
    assert zerogpu.gpu(duration=120)(answer) is answer
    assert zerogpu.gpu(stream) is stream and inspect.isgeneratorfunction(zerogpu.gpu(stream))


@pytest.mark.parametrize("flag", [None, "", "0", "false"])
def test_gpu_is_the_identity_off_zerogpu_even_with_spaces_installed(monkeypatch, flag):
    calls = []
    monkeypatch.setitem(sys.modules, "spaces", fake_spaces(calls))
    if flag is None:
        monkeypatch.delenv(zerogpu.ENV, raising=False)
    else:
        monkeypatch.setenv(zerogpu.ENV, flag)
    assert zerogpu.gpu(answer) is answer and zerogpu.gpu(duration=30)(stream) is stream
    assert calls == []


def test_gpu_wraps_with_spaces_gpu_and_its_duration_on_zerogpu(monkeypatch):
    calls = []
    monkeypatch.setitem(sys.modules, "spaces", fake_spaces(calls))
    monkeypatch.setenv(zerogpu.ENV, "true")
    wrapped = zerogpu.gpu(duration=120)(answer)
    assert calls == [(answer, 120, wrapped)] and wrapped is not answer
    assert wrapped("circle.png") == "circle.png: what shape?"
    assert zerogpu.gpu(stream) is calls[-1][2] and calls[-1][:2] == (stream, zerogpu.DEFAULT_DURATION)

    def by_size(image, question="", top_k=5):
        return 10 * top_k

    zerogpu.gpu(duration=by_size)(answer)
    assert calls[-1][1] is by_size  # a dynamic duration goes to spaces.GPU as it is


def test_importing_zerogpu_imports_neither_torch_gradio_nor_spaces():
    code = "import sys, mmdemo.zerogpu; print(sorted({'torch', 'gradio', 'spaces'} & set(sys.modules)))"
    env = {**os.environ, zerogpu.ENV: "1"}
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert done.stdout.strip() == "[]", done.stderr


# --- the feedback database on a Space ---------------------------------------------------------------------------


def test_the_feedback_database_defaults_to_a_spaces_persistent_storage(tmp_path, monkeypatch):
    for name in ("MMDEMO_FEEDBACK_DB", "MMDEMO_DATA_DIR", "SPACE_ID"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    monkeypatch.setattr(store, "SPACE_STORAGE", tmp_path / "data")
    local = tmp_path / "xdg" / "mmdemo" / "feedback.db"
    assert store.default_path() == local  # not on a Space
    monkeypatch.setenv("SPACE_ID", "someone/mmdemo")
    assert store.default_path() == local  # a Space without persistent storage: its own disk
    (tmp_path / "data").mkdir()
    assert store.default_path() == tmp_path / "data" / "mmdemo" / "feedback.db"
    assert store.database_url() == f"sqlite:///{tmp_path / 'data' / 'mmdemo' / 'feedback.db'}"
    assert (tmp_path / "data" / "mmdemo").is_dir()
    monkeypatch.setenv("MMDEMO_DATA_DIR", str(tmp_path / "mine"))
    assert store.default_path() == tmp_path / "mine" / "feedback.db"  # the environment still wins
    monkeypatch.setenv("MMDEMO_FEEDBACK_DB", "postgresql://u@h/feedback")
    assert store.database_url() == "postgresql+psycopg://u@h/feedback"
