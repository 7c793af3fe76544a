"""The model catalog: which models exist, for which tasks, run by which backend."""

import functools
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

TASKS = (
    "image-to-text",
    "visual-question-answering",
    "image-classification",
    "zero-shot-image-classification",
    "audio-classification",
    "automatic-speech-recognition",
)
CATALOG = Path(__file__).with_name("catalog.toml")
ASSETS = Path(os.environ.get("MMDEMO_ASSETS", Path(__file__).resolve().parent.parent / "assets"))


@dataclass(frozen=True)
class ModelInfo:
    name: str  # what users pick in the UI, the CLI and pipeline(model=...)
    tasks: tuple[str, ...]  # Hugging Face task ids it serves
    backend: str  # which backend runs it ("native": our own models)
    offline: bool = True  # works with no network
    description: str = ""
    license: str = ""
    size: str = ""  # approximate download / disk size
    default_for: tuple[str, ...] = ()  # tasks whose default it is
    path: str | None = None  # checkpoint folder (native models; a local copy of a hub model)
    hub_id: str | None = None  # Hugging Face hub repository, e.g. "Salesforce/blip-image-captioning-base"
    revision: str | None = None  # pinned hub commit
    dtype: str = "auto"  # "auto" (bf16/fp16 on GPU, fp32 on CPU), "float32", "bfloat16", "float16"
    recommended: bool = False  # a recommended default when the hub is reachable
    extra: dict = field(default_factory=dict, compare=False)  # backend-specific settings


def _read(path: Path) -> list[ModelInfo]:
    """The catalog file's entries, parsed once per version of the file (every request looks models up)."""
    stat = path.stat()
    return list(_parse(path, stat.st_mtime_ns, stat.st_size))


@functools.lru_cache(maxsize=16)
def _parse(path: Path, _mtime_ns: int, _size: int) -> tuple[ModelInfo, ...]:
    models = []
    for entry in tomllib.loads(path.read_text())["model"]:
        entry = dict(entry)
        known = {k: entry.pop(k) for k in list(entry) if k in ModelInfo.__dataclass_fields__}
        for key in ("tasks", "default_for"):
            known[key] = tuple(known.get(key, ()))
        if known.get("path") and not Path(known["path"]).is_absolute():
            known["path"] = str(ASSETS / known["path"]) if path == CATALOG else str(path.parent / known["path"])
        models.append(ModelInfo(**known, extra=entry))
    return tuple(models)


def catalog() -> list[ModelInfo]:
    """The bundled catalog, then the user's own (MMDEMO_CATALOG=file.toml), whose names override."""
    models = {m.name: m for m in _read(CATALOG)}
    if os.environ.get("MMDEMO_CATALOG"):
        models.update({m.name: m for m in _read(Path(os.environ["MMDEMO_CATALOG"]))})
    return list(models.values())


def list_models(task: str | None = None) -> list[ModelInfo]:
    """Every model in the catalog, or those serving `task`."""
    if task is not None and task not in TASKS:
        raise ValueError(f"unknown task {task!r}; tasks are: {', '.join(TASKS)}")
    return [m for m in catalog() if task is None or task in m.tasks]


def find_model(task: str, model: str | None) -> ModelInfo:
    """The catalog entry for `model`, or a local checkpoint folder. The default is the task's (last)
    recommended hub model where the hub can serve it (see `hub_available`), else its last `default_for`
    entry: a user catalog's entries come last, so its choices win over the bundled ones."""
    models = list_models(task)
    if model is None:
        hub = [m for m in models if m.recommended and m.hub_id and hub_available(m)]
        defaults = hub or [m for m in models if task in m.default_for] or models
        if not defaults:
            served = sorted({t for m in catalog() for t in m.tasks})
            raise ValueError(f"no model serves {task!r} yet; tasks with models: {', '.join(served)}")
        return defaults[-1]  # the last: a user catalog's entries come after the bundled ones
    for m in models:
        if m.name == model:
            return m
    other = next((m for m in catalog() if m.name == model), None)
    if other is not None:
        raise ValueError(
            f"{model!r} does not do {task} (it does {', '.join(other.tasks)}); for {task} pick one of: "
            + (", ".join(m.name for m in models) or "none")
        )
    if Path(model).is_dir() and (Path(model) / "config.json").exists():
        return ModelInfo(name=Path(model).name, tasks=(task,), backend="native", path=str(model))
    names = ", ".join(m.name for m in models) or "none"
    raise ValueError(f"unknown model {model!r} for {task!r}; available: {names} (or a checkpoint folder)")


def hub_available(info: ModelInfo) -> bool:
    """Whether a hub model should be a default here. MMDEMO_HUB=off (or HF_HUB_OFFLINE=1): never;
    MMDEMO_HUB=on: always (downloaded on first use); auto (default): when it is already in the local
    Hugging Face cache, or the hub answers within 2 s."""
    mode = os.environ.get("MMDEMO_HUB", "auto").lower()
    if mode == "off" or os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes"):
        return False
    return mode == "on" or _cached(info.hub_id, info.revision) or _hub_answers()


def _cached(hub_id: str, revision: str | None) -> bool:
    from huggingface_hub import try_to_load_from_cache

    return isinstance(try_to_load_from_cache(hub_id, "config.json", revision=revision), str)


@functools.cache
def _hub_answers() -> bool:
    """One quick look per process: is huggingface.co reachable?"""
    import urllib.request

    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co")
    try:
        urllib.request.urlopen(f"{endpoint}/api/models?limit=1", timeout=2)
        return True
    except OSError:
        return False


@functools.cache
def revision_of(info: ModelInfo) -> str:
    """Which weights a model's outputs come from: its pinned hub commit, else a digest of its checkpoint folder's
    files ("sha256:" and 16 hex digits), else the version of the package its weights install from."""
    if info.revision:
        return info.revision
    if info.path and Path(info.path).is_dir():
        import hashlib

        digest = hashlib.sha256()
        for file in sorted(p for p in Path(info.path).rglob("*") if p.is_file()):
            digest.update(file.relative_to(info.path).as_posix().encode() + b"\0" + file.read_bytes())
        return "sha256:" + digest.hexdigest()[:16]
    if info.hub_id:
        return "main"
    if info.extra.get("served_model"):  # a model on an OpenAI-compatible server
        return f"{info.extra['served_model']}@{info.extra.get('base_url', '?')}"
    package = info.extra.get("weights_package")
    if package:
        from importlib.metadata import PackageNotFoundError, version

        try:
            return f"{package}=={version(package)}"
        except PackageNotFoundError:
            return f"{package} (not installed)"
    return "unknown"
