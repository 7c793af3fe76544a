"""The Ray Serve application (mmdemo.serving): the deployment code, the input encoding, error unwrapping and the
RemoteBackend without a cluster; then the whole app on a real local Ray, answering through gradio_client, with
batches forming under concurrent load."""

import asyncio
import json
import pickle
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace

import numpy as np
import pytest
from conftest import EXAMPLES, ROOT, VQA, free_port, get_json
from PIL import Image

import mmdemo
from mmdemo.errors import InputError, ModelError
from mmdemo.registry import find_model
from mmdemo.serving import RemoteBackend, decode_item, encode_item, serve_locally, serve_remotely, user_error

ray = pytest.importorskip("ray")
from ray.exceptions import ActorDiedError, RayTaskError  # noqa: E402

from mmdemo.serving.ray_app import ModelDeployment, run_grouped  # noqa: E402

CLASSIFY = "image-classification"
SCENES = ROOT / "assets" / "examples" / "scenes"
UNKNOWN = "what colour is the zebra?"


@pytest.fixture(scope="module")
def vqa_examples() -> list[dict]:
    return [{**e, "image": str(EXAMPLES / e["image"])} for e in json.loads((EXAMPLES / "examples.json").read_text())]


@pytest.fixture(scope="module")
def scene_examples() -> list[dict]:
    """One-shape scenes, whose label the scene classifier knows."""
    items = json.loads((SCENES / "examples.json").read_text())
    one_shape = [e for e in items if e["captions"][0].startswith("a ") and " of " not in e["captions"][0]]
    return [{**e, "image": str(SCENES / e["image"])} for e in one_shape]


def test_importing_mmdemo_and_its_serving_package_does_not_import_ray():
    code = "import sys, mmdemo, mmdemo.serving, mmdemo.cli; assert 'ray' not in sys.modules, 'ray imported'"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


def test_items_travel_as_pixels_and_come_back_the_same(vqa_examples):
    image = Image.open(vqa_examples[0]["image"]).convert("RGB")
    audio = np.random.default_rng(0).standard_normal(16000).astype(np.float32)
    for im in (image, image.convert("L"), image.convert("RGBA")):
        item = {"image": im, "question": "what shape?", "audio": audio, "sampling_rate": 16000}
        sent = pickle.loads(pickle.dumps(encode_item(item)))  # what Ray does to it, minus the zero-copy
        assert not any(isinstance(v, Image.Image) for v in sent.values())
        back = decode_item(sent)
        assert back["image"].mode == im.mode and np.array_equal(np.asarray(back["image"]), np.asarray(im))
        assert back["question"] == "what shape?" and back["sampling_rate"] == 16000
        assert np.array_equal(back["audio"], audio)


def test_errors_raised_in_a_deployment_come_back_as_the_pipeline_raises_them():
    def remote(cause: Exception) -> RayTaskError:
        return RayTaskError("ModelDeployment.__call__", "Traceback ...", cause)

    e = user_error(remote(InputError("This model does not know the word 'zebra'.")), "m")
    assert type(e) is InputError and str(e) == "This model does not know the word 'zebra'."
    e = user_error(remote(ModelError("m ran out of memory on this input.")), "m")
    assert type(e) is ModelError and str(e) == "m ran out of memory on this input."
    oom = RuntimeError("CUDA out of memory. Tried to allocate 20.00 GiB")
    assert user_error(remote(oom), "m") is oom  # the model's own error: the pipeline turns it into its message
    e = user_error(ActorDiedError(), "mmdemo-vqa-easy")  # the replica died: say so, without Ray's details
    assert type(e) is ModelError and "model server for mmdemo-vqa-easy could not answer" in str(e)
    assert "Traceback" not in str(e)


@pytest.fixture()
def outside_serve(monkeypatch):
    """What @serve.batch reads of its replica (max_ongoing_requests), for deployments made outside Serve."""
    context = SimpleNamespace(_deployment_config=SimpleNamespace(max_ongoing_requests=64))
    monkeypatch.setattr(ray.serve, "get_replica_context", lambda: context)


def _encoded(items: list[dict]) -> list[dict]:
    return [encode_item({"image": mmdemo.inputs.load_image(it["image"]), "question": it["question"]}) for it in items]


def test_the_deployment_answers_in_batches_without_a_cluster(vqa_examples, outside_serve):
    deployment = ModelDeployment.func_or_class("mmdemo-vqa-easy", max_batch_size=8, batch_wait_timeout_s=0.05)
    items = _encoded(vqa_examples)

    async def concurrently():  # one caller per example, as many users at once
        return await asyncio.gather(*(deployment([item], {"top_k": 1}) for item in items))

    results = asyncio.run(concurrently())
    assert [r[0][0]["answer"] for r in results] == [e["answer"] for e in vqa_examples]
    assert sum(deployment.batch_sizes()) == len(items) and max(deployment.batch_sizes()) == 8
    with pytest.raises(InputError, match="does not know the words 'colour', 'zebra'"):
        deployment.validate(encode_item({"question": UNKNOWN}))


def test_a_batch_with_different_params_gives_each_input_its_own(vqa_examples):
    backend = mmdemo.pipeline(VQA, "mmdemo-vqa-easy").backend
    items = [decode_item(item) for item in _encoded(vqa_examples[:3])]
    results = run_grouped(backend, items, [{"top_k": 1}, {"top_k": 3}, {"top_k": 1}])
    assert [len(r) for r in results] == [1, 3, 1]
    assert [r[0]["answer"] for r in results] == [e["answer"] for e in vqa_examples[:3]]


class FakeResponse:
    """A DeploymentResponse: result() gives the value, or raises as Ray does (RayTaskError around the cause)."""

    def __init__(self, call, loop):
        self.call, self.loop = call, loop

    def result(self, timeout_s=None):
        try:
            value = self.call()
            return asyncio.run_coroutine_threadsafe(value, self.loop).result() if asyncio.iscoroutine(value) else value
        except Exception as e:
            raise RayTaskError("ModelDeployment", "Traceback (most recent call last): ...", e) from None


class FakeHandle:
    """A DeploymentHandle over a ModelDeployment in this process (its event loop in a thread, as on a replica),
    pickling what it sends as Ray does."""

    def __init__(self, deployment, loop):
        self.deployment, self.loop, self.calls = deployment, loop, 0
        validate = lambda item: FakeResponse(lambda: deployment.validate(_sent(item)), loop)  # noqa: E731
        self.validate = SimpleNamespace(remote=validate)

    def remote(self, items, params):
        self.calls += 1
        return FakeResponse(lambda: self.deployment(_sent(items), dict(params)), self.loop)


def _sent(value):
    return pickle.loads(pickle.dumps(value))


@pytest.fixture()
def remote_vqa(outside_serve):
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    deployment = asyncio.run_coroutine_threadsafe(_make("mmdemo-vqa-easy"), loop).result()
    try:
        yield FakeHandle(deployment, loop)  # the test registers it (serve_remotely)
    finally:
        serve_locally(["mmdemo-vqa-easy"])
        asyncio.run_coroutine_threadsafe(_cancel_others(), loop).result()  # the batch queue's task
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        loop.close()


async def _make(name: str):
    return ModelDeployment.func_or_class(name)  # on the loop, as Serve does: @serve.batch binds to it


async def _cancel_others() -> None:
    for task in asyncio.all_tasks():
        if task is not asyncio.current_task():
            task.cancel()


def test_the_pipeline_runs_a_registered_model_through_its_handle_with_the_same_results(remote_vqa, vqa_examples):
    local = mmdemo.pipeline(VQA, "mmdemo-vqa-easy")
    local_results = local([e["image"] for e in vqa_examples], [e["question"] for e in vqa_examples])
    with pytest.raises(InputError) as local_error:
        local(vqa_examples[0]["image"], UNKNOWN)
    serve_remotely({"mmdemo-vqa-easy": remote_vqa})  # the local copy is unloaded
    remote = mmdemo.pipeline(VQA, "mmdemo-vqa-easy")
    assert isinstance(remote.backend, RemoteBackend)
    results = remote([e["image"] for e in vqa_examples], [e["question"] for e in vqa_examples])
    assert results == local_results and remote_vqa.calls == -(-len(vqa_examples) // remote.batch_size)
    assert [r[0]["answer"] for r in results] == [e["answer"] for e in vqa_examples]
    with pytest.raises(InputError) as remote_error:
        remote(vqa_examples[0]["image"], UNKNOWN)
    assert str(remote_error.value) == str(local_error.value)
    with pytest.raises(InputError, match="^Input 2: This model does not know"):  # positions named as locally
        remote([vqa_examples[0]["image"]] * 2, ["what shape is in the image?", UNKNOWN])
    serve_locally(["mmdemo-vqa-easy"])
    assert not isinstance(mmdemo.pipeline(VQA, "mmdemo-vqa-easy").backend, RemoteBackend)


def test_a_model_error_on_the_server_reaches_the_pipeline_as_its_local_message(remote_vqa, vqa_examples, monkeypatch):
    def out_of_memory(items, **params):
        raise RuntimeError("CUDA out of memory. Tried to allocate 20.00 GiB")

    serve_remotely({"mmdemo-vqa-easy": remote_vqa})
    monkeypatch.setattr(remote_vqa.deployment, "backend", out_of_memory)
    monkeypatch.setattr(out_of_memory, "validate", lambda item: None, raising=False)
    with pytest.raises(ModelError, match="mmdemo-vqa-easy ran out of memory on this input"):
        mmdemo.pipeline(VQA, "mmdemo-vqa-easy")(vqa_examples[0]["image"], vqa_examples[0]["question"])


# --- the whole app on a real local Ray ---


@pytest.fixture(scope="module")
def ray_app(tmp_path_factory):
    """The app on a local Ray (2 CPUs, loopback): the VQA model and the scene classifier in their own deployments
    (half a CPU each), the UI on its replica. Yields its URL; Serve and Ray are stopped afterwards."""
    from ray import serve

    from mmdemo.serving.ray_app import build_app

    home = tmp_path_factory.mktemp("ray-app")
    env = {"MMDEMO_FEEDBACK_DB": str(home / "feedback.db"), "HF_HUB_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False"}
    ray.init(
        address="local",
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        runtime_env={"env_vars": env},
        _node_ip_address="127.0.0.1",
    )
    try:
        port = free_port()
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        quick_stop = {"graceful_shutdown_timeout_s": 1, "graceful_shutdown_wait_loop_s": 0.2}
        model = {"ray_actor_options": {"num_cpus": 0.5}, "max_batch_size": 16, "batch_wait_timeout_s": 0.01}
        models = {"mmdemo-vqa-easy": {**model, **quick_stop}, "mmdemo-scene-classifier": {**model, **quick_stop}}
        ui = {"ray_actor_options": {"num_cpus": 0}, **quick_stop}
        serve.run(build_app({"models": models, "ui": ui}), name="mmdemo")
        yield f"http://127.0.0.1:{port}"
    finally:
        serve.shutdown()
        ray.shutdown()


def test_the_app_on_ray_serve_answers_and_batches_concurrent_users(ray_app, vqa_examples, scene_examples):
    from gradio_client import Client, handle_file
    from ray import serve

    assert get_json(ray_app + "/healthz") == (200, {"status": "ok"})
    end = time.time() + 60
    while (ready := get_json(ray_app + "/readyz"))[0] != 200 and time.time() < end:
        time.sleep(0.5)
    assert ready == (200, {"ready": True, "problems": {}})

    def user(n: int) -> list[tuple[str, str]]:
        """One user asking about three examples and classifying a scene: (got, expected) each."""
        client = Client(ray_app + "/", verbose=False)
        out = []
        for e in (vqa_examples[(n + k) % len(vqa_examples)] for k in range(3)):
            label, _ = client.predict(handle_file(e["image"]), e["question"], "mmdemo-vqa-easy", api_name="/answer")
            out.append((label["label"], e["answer"]))
        scene = scene_examples[n % len(scene_examples)]
        label, info = client.predict(handle_file(scene["image"]), "mmdemo-scene-classifier", api_name="/classify_image")
        out.append((label["label"], scene["label"]))
        return out

    with ThreadPoolExecutor(16) as pool:
        answers = [pair for pairs in pool.map(user, range(16)) for pair in pairs]
    assert len(answers) == 64 and all(got == expected for got, expected in answers), answers

    client = Client(ray_app + "/", verbose=False)
    with pytest.raises(Exception) as err:
        client.predict(handle_file(vqa_examples[0]["image"]), UNKNOWN, "mmdemo-vqa-easy", api_name="/answer")
    local = mmdemo.pipeline(VQA, "mmdemo-vqa-easy").backend
    with pytest.raises(InputError) as local_err:
        local.validate({"question": UNKNOWN})
    assert str(local_err.value) in str(err.value)  # the same message as the app served in one process

    sizes = serve.get_deployment_handle("mmdemo-vqa-easy", app_name="mmdemo").batch_sizes.remote().result()
    assert sum(sizes) >= 48 and max(sizes) > 1, sizes  # concurrent users shared model calls


def test_the_serve_config_names_a_deployment_per_model_and_builds():
    import yaml
    from ray.serve.schema import ServeDeploySchema

    from mmdemo.serving.ray_app import build_app, default_models

    config = ServeDeploySchema.model_validate(yaml.safe_load((ROOT / "deploy" / "serve_config.yaml").read_text()))
    (app,) = config.applications
    models = app.args["models"]
    assert set(models) == set(default_models())  # every bundled model has its own deployment
    assert {d.name for d in app.deployments} == {*models, "UIDeployment"}
    assert build_app(app.args) is not None  # binds the deployments; nothing loads until Serve runs them


def test_mmdemo_serve_takes_ray_flags():
    from mmdemo.cli import build_parser

    args = build_parser().parse_args(["serve", "--ray", "--models", "mmdemo-vqa-easy", "--replicas", "2"])
    assert args.ray and args.models == "mmdemo-vqa-easy" and args.replicas == 2 and args.ray_address is None
    assert not build_parser().parse_args(["serve"]).ray  # `python app.py`'s path stays the default


def test_a_server_that_does_not_answer_in_time_gives_a_clear_message():
    class Stuck:
        def result(self, timeout_s=None):
            time.sleep(min(timeout_s, 0.2))
            raise TimeoutError(f"timed out after {timeout_s}s")  # what DeploymentResponse.result raises

    handle = SimpleNamespace(remote=lambda items, params: Stuck(), validate=SimpleNamespace(remote=lambda i: Stuck()))
    backend = RemoteBackend(find_model(VQA, "mmdemo-vqa-easy"), handle, timeout_s=0.1)
    with pytest.raises(ModelError, match=r"mmdemo-vqa-easy did not answer within 0.1 s; please try again"):
        backend([{"question": "what shape?"}])
    assert RemoteBackend(find_model(VQA, "mmdemo-vqa-easy"), handle).timeout_s == 120  # never waits forever
