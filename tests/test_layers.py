"""The layering rules of STYLE.md, checked on the source: app/UI -> pipeline -> backends -> models."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT

PACKAGE = ROOT / "mmdemo"
UI_FILES = [ROOT / "app.py", PACKAGE / "ui.py"]


def imported_modules(path: Path) -> set[str]:
    """Top-level names of every module `path` imports, wherever the import statement sits."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
        elif (
            isinstance(node, ast.Call)
            and getattr(node.func, "attr", getattr(node.func, "id", None)) in ("import_module", "__import__")
            and node.args
            and isinstance(node.args[0], ast.Constant)
        ):
            names.add(str(node.args[0].value).split(".")[0])
    return names


def test_the_checker_sees_imports(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text(
        "import os.path\nfrom torch import nn\ndef f():\n    import gradio as gr\n"
        "    importlib.import_module('transformers.models')\n"
    )
    assert imported_modules(sample) == {"os", "torch", "gradio", "transformers"}


@pytest.mark.parametrize("path", UI_FILES, ids=lambda p: p.name)
def test_ui_never_imports_torch_or_transformers(path):
    assert not imported_modules(path) & {"torch", "transformers", "torchvision", "safetensors"}


def test_only_the_ui_module_imports_gradio():
    """The benchmark may use gradio_client: its HTTP phase calls the app as users' scripts do."""
    offenders = [
        str(p.relative_to(ROOT))
        for p in PACKAGE.rglob("*.py")
        if p != PACKAGE / "ui.py"
        and imported_modules(p) & ({"gradio"} if p.name == "bench.py" else {"gradio", "gradio_client"})
    ]
    assert offenders == []


def test_models_do_not_reach_up_the_layers():
    for path in (PACKAGE / "models").rglob("*.py"):
        text = path.read_text()
        for upper in ("mmdemo.pipelines", "mmdemo.backends", "mmdemo.ui", "mmdemo.cli"):
            assert upper not in text, f"{path.name} imports {upper}"


def run_python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)


def test_import_mmdemo_is_light():
    done = run_python(
        "import mmdemo, sys; assert 'torch' not in sys.modules, 'torch'; "
        "assert 'gradio' not in sys.modules, 'gradio'; mmdemo.list_models(); print('ok')"
    )
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr


def test_importing_the_ui_does_not_load_torch():
    done = run_python("import mmdemo.ui, sys; assert 'torch' not in sys.modules; print('ok')")
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr


def test_the_app_with_bundled_models_never_imports_transformers():
    done = run_python(
        "import sys; from mmdemo import ui; ui.build_demo(); ui._warm(); "
        "assert 'transformers' not in sys.modules, 'transformers imported'; print('ok')"
    )
    assert done.returncode == 0 and done.stdout.strip().endswith("ok"), done.stderr[-2000:]
