"""Which model is a task's default: the recommended hub model where the hub can serve it, else the bundled one."""

import pytest

from mmdemo import registry

HUB_ENTRY = """
[[model]]
name = "hub-captioner"
tasks = ["image-to-text"]
backend = "transformers"
runner = "blip-caption"
hub_id = "mmdemo-tests/not-a-real-repo"
revision = "0123456789abcdef0123456789abcdef01234567"
offline = false
recommended = true
"""


@pytest.fixture
def hub_catalog(tmp_path, monkeypatch):
    path = tmp_path / "catalog.toml"
    path.write_text(HUB_ENTRY)
    monkeypatch.setenv("MMDEMO_CATALOG", str(path))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))  # an empty cache
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)


def default() -> str:
    return registry.find_model("image-to-text", None).name


def test_catalog_entries_carry_hub_fields(hub_catalog):
    entry = next(m for m in registry.catalog() if m.name == "hub-captioner")
    assert (entry.hub_id, entry.revision, entry.recommended, entry.offline) == (
        "mmdemo-tests/not-a-real-repo",
        "0123456789abcdef0123456789abcdef01234567",
        True,
        False,
    )
    assert entry.extra == {"runner": "blip-caption"}


@pytest.mark.parametrize(
    ("mode", "hub_answers", "expected"),
    [
        ("on", False, "hub-captioner"),  # asked for: downloaded on first use
        ("off", True, "mmdemo-captioner"),  # refused even when the hub is there
        ("auto", True, "hub-captioner"),  # the hub answers
        ("auto", False, "mmdemo-captioner"),  # no hub and nothing cached: the bundled model
    ],
)
def test_the_default_follows_where_the_hub_can_serve(hub_catalog, monkeypatch, mode, hub_answers, expected):
    monkeypatch.setenv("MMDEMO_HUB", mode)
    monkeypatch.setattr(registry, "_hub_answers", lambda: hub_answers)
    assert default() == expected


def test_offline_always_means_the_bundled_model(hub_catalog, monkeypatch):
    monkeypatch.setenv("MMDEMO_HUB", "on")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert default() == "mmdemo-captioner"


def test_a_cached_hub_model_is_the_default_offline_of_the_network(hub_catalog, monkeypatch, tmp_path):
    from huggingface_hub import constants

    monkeypatch.setenv("MMDEMO_HUB", "auto")
    monkeypatch.setattr(registry, "_hub_answers", lambda: False)
    assert default() == "mmdemo-captioner"
    revision = "0123456789abcdef0123456789abcdef01234567"
    snapshot = tmp_path / "hf" / "hub" / "models--mmdemo-tests--not-a-real-repo" / "snapshots" / revision
    snapshot.mkdir(parents=True)
    (snapshot / "config.json").write_text("{}")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))
    assert default() == "hub-captioner"


def test_a_model_of_another_task_is_refused_with_the_right_choices():
    with pytest.raises(ValueError, match="'mmdemo-vqa-easy' does not do image-to-text") as e:
        registry.find_model("image-to-text", "mmdemo-vqa-easy")
    assert "it does visual-question-answering" in str(e.value) and "mmdemo-captioner" in str(e.value)
