"""Load on the app as shipped, in this process (RELIABILITY.md, "Load and durability figures"): 64 concurrent clients,
mixed requests, every output checked against its example; no failure but explicit queue-full refusals; memory flat
across identical batches; the upload folder bounded by the distinct files uploaded. Sized for CI on 2 cores (64 clients
x 2 requests a batch); `python scripts/loadtest.py` runs the full 64 x 20 and prints the figures.
"""

import importlib.util
import logging

import pytest
from conftest import ROOT

gradio_client = pytest.importorskip("gradio_client")
from gradio_client import Client  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::Warning:gradio.queueing")
CLIENTS, PER_CLIENT = 64, 2


def _loadtest():
    spec = importlib.util.spec_from_file_location("loadtest", ROOT / "scripts" / "loadtest.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


loadtest = _loadtest()


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    home = tmp_path_factory.mktemp("load-app")
    with pytest.MonkeyPatch.context() as mp:
        for name in ("MMDEMO_FEEDBACK_DB", "GRADIO_TEMP_DIR"):
            mp.setenv(name, "")  # start_app sets them; the context puts back what was there
        from mmdemo import ui

        mp.setattr(ui, "_store", None)  # this module's database, not one another test opened
        requests_log = logging.getLogger("mmdemo.requests")
        mp.setattr(requests_log, "level", requests_log.level)  # start_app quiets it; put it back afterwards
        ui, demo, url = loadtest.start_app(home)
        try:
            yield ui, url, home
        finally:
            demo.close()


def test_the_plan_mixes_every_endpoint_on_examples_with_known_outputs():
    requests = [r for client in range(CLIENTS) for r in loadtest.plan(client, 20)]
    assert {r.endpoint for r in requests} == set(loadtest.ENDPOINTS)
    assert all(r.expected for r in requests)
    assert len({r.args for r in requests if r.endpoint == "answer"}) == 12  # every easy-VQA example


def test_concurrent_clients_get_correct_answers_with_flat_memory_and_bounded_uploads(app):
    ui, url, home = app
    uploads = home / "uploads"
    clients = [Client(url, verbose=False) for _ in range(CLIENTS)]
    files_before = loadtest.files_under(uploads)
    plans = [loadtest.plan(c, PER_CLIENT) for c in range(CLIENTS)]
    assert {r.endpoint for plan in plans for r in plan} == set(loadtest.ENDPOINTS)  # every endpoint under load
    loadtest.run_batch(clients, PER_CLIENT)  # warm-up: every model has loaded and met batches of many sizes
    figures = []
    for batch in range(3):
        results = loadtest.run_batch(clients, PER_CLIENT)
        figures.append((results, loadtest.rss_mb(), loadtest.files_under(uploads)))
        print(f"batch {batch + 1}: " + loadtest.report(results, CLIENTS))
        print(f"  RSS {figures[-1][1]:.0f} MB, files in the upload folder {figures[-1][2]}")
        assert not results.wrong, results.wrong[:5]  # every output is its example's expected one
        unexpected = {kind: n for kind, n in results.failures.items() if kind != loadtest.QUEUE_FULL}
        assert not unexpected, unexpected  # queue-full refusals are the only failures allowed (and counted)
        assert results.requests == CLIENTS * PER_CLIENT
    (_, rss2, files2), (_, rss3, files3) = figures[1], figures[2]
    assert rss3 <= rss2 * 1.05, f"RSS grew from {rss2:.0f} MB to {rss3:.0f} MB between identical batches"
    # Gradio stores an upload under a hash of its content, by its name: the same example uploaded again adds nothing
    # (here not even the first time: building the app's gr.Examples put the examples there already)
    distinct = {r.args[i] for plan in plans for r in plan for i in r.files}
    assert files2 - files_before <= len(distinct)
    assert files3 == files2
    # every feedback acknowledged is stored (a session's repeat for the same result updates its row)
    rated = {clients[c].session_hash for c in range(CLIENTS) if any(r.endpoint == "feedback" for r in plans[c])}
    stored = {r["session"] for r in ui.feedback_store().rows(limit=10_000) if r["comment"] == "load test"}
    assert rated and rated <= stored
