"""Security checks against the running app on loopback (RELIABILITY.md, "Security checks against a running app").

The app runs as shipped (bundled models) in this process, with its own feedback database holding a row with media
and a review password. File routes must serve nothing outside uploads and static assets; model endpoints cannot be
reached past the queue; foreign origins get no CORS grant; uploads are capped; hostile payloads to every endpoint get
a 4xx or a readable gr.Error, and the app keeps serving.
"""

import json
import threading
import time
import uuid
from http.client import HTTPConnection
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
from conftest import EXAMPLES, ROOT, assert_user_message, free_port

gradio_client = pytest.importorskip("gradio_client")
from gradio_client import Client, handle_file  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::Warning:gradio.queueing")
PASSWORD = "review-secret"
IMAGE = EXAMPLES / "5.png"  # a brown circle
QUESTION = "what color is the circle?"
CANARY = "canary-7f3a9c"  # stored in the feedback database: no route may ever return it
QUEUE_SIZE = 4  # small, so that the queue-full check fills it quickly
MODEL_ENDPOINTS = ["answer", "caption", "classify_image", "classify_zero_shot", "classify_audio", "transcribe"]
MODEL_ENDPOINTS += ["compare"]
API = {f"/{name}" for name in MODEL_ENDPOINTS} | {"/feedback"}  # every documented endpoint of this build
SOUND = ROOT / "assets" / "examples" / "sounds" / "siren.wav"


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    """(ui, demo, url, home): the app as shipped, with a feedback row (with its image) already stored."""
    home = tmp_path_factory.mktemp("security-app")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MMDEMO_FEEDBACK_DB", str(home / "db" / "feedback.db"))
        mp.setenv("MMDEMO_FEEDBACK_PASSWORD", PASSWORD)
        mp.setenv("GRADIO_TEMP_DIR", str(home / "uploads"))
        from mmdemo import ui

        mp.setattr(ui, "_store", None)  # this module's database, not one another test opened
        mp.setattr(ui, "QUEUE_SIZE", QUEUE_SIZE)
        mp.setattr(ui, "MODEL_CONCURRENCY", 2)  # few, so that the queue-full check fills the slots quickly
        demo = ui.build_demo()
        _, url, _ = ui.launch(demo, host="127.0.0.1", port=free_port(), prevent_thread_lock=True, quiet=True)
        try:
            client = Client(url, verbose=False)
            label, _ = client.predict(handle_file(str(IMAGE)), QUESTION, None, api_name="/answer")
            assert label["label"] == "brown"
            assert client.predict("ask", "👎", CANARY, "", "", api_name="/feedback").startswith("Saved")
            (row,) = ui.feedback_store().rows()
            assert row["comment"] == CANARY and row["media_sha256"]
            yield ui, demo, url.rstrip("/"), home
        finally:
            demo.close()


@pytest.fixture(scope="module")
def web(app):
    with httpx.Client(base_url=app[2], timeout=60) as h:
        yield h


def raw_get(url: str, path: str, headers: dict | None = None) -> tuple[int, bytes]:
    """GET `path` exactly as written: no client-side normalisation of `..` or of %-escapes (httpx does both)."""
    host, port = url.removeprefix("http://").split(":")
    conn = HTTPConnection(host, int(port), timeout=30)
    try:
        conn.putrequest("GET", path, skip_accept_encoding=True)
        for key, value in (headers or {}).items():
            conn.putheader(key, value)
        conn.endheaders()
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def secrets(app) -> dict[str, Path]:
    """Files that must never be served, by name."""
    db = Path(app[0].feedback_store().engine.url.database)
    return {
        "passwd": Path("/etc/passwd"),
        "app.py": ROOT / "app.py",
        "ui.py": ROOT / "mmdemo" / "ui.py",
        "catalog": ROOT / "mmdemo" / "catalog.toml",
        "weights": ROOT / "assets" / "models" / "vqa-easy" / "model.safetensors",
        "db": db,
        "db-wal": db.with_name(db.name + "-wal"),
        "db-shm": db.with_name(db.name + "-shm"),
    }


def leaked(body: bytes, app) -> str | None:
    """What secret content `body` holds, if any."""
    markers = {
        "passwd": b"root:x:0",
        "source": b"import gradio",
        "catalog": b"[[model]]",
        "sqlite": b"SQLite format 3",
        "wal": b"\x37\x7f\x06\x82",  # the WAL header's magic
        "canary": CANARY.encode(),
        "safetensors": b'"__metadata__"',
    }
    return next((name for name, marker in markers.items() if marker in body), None)


def spellings(app) -> list[str]:
    """Ways of naming each secret file in a URL path: absolute, relative, `..` out of the upload folder, and `..`
    %-encoded once and twice."""
    uploads = Path(app[3]) / "uploads"
    out = []
    for path in secrets(app).values():
        absolute = str(path)
        up = "../" * (len(uploads.parts) - 1) + absolute.lstrip("/")  # from the upload folder up to / and down
        out += [absolute, f"{uploads}/{up}", quote(absolute, safe=""), f"{uploads}/" + up.replace("../", "%2e%2e%2f")]
        out += [f"{uploads}/" + up.replace("../", "%252e%252e%252f"), f"{uploads}/" + up.replace("../", "..%2f")]
        if path.is_relative_to(ROOT):
            relative = str(path.relative_to(ROOT))
            out += [relative, "../" * 8 + relative, f"{uploads}/../../../{relative}"]
    return out


FILE_ROUTES = ["/gradio_api/file=", "/gradio_api/file/", "/file=", "/static/", "/assets/", "/gradio_api/proxy="]


def test_the_secret_files_exist_and_hold_what_the_leak_check_looks_for(app):
    files = secrets(app)
    assert all(p.is_file() for p in files.values()), {n: p for n, p in files.items() if not p.is_file()}
    assert leaked(files["db"].read_bytes() + files["db-wal"].read_bytes(), app)  # the canary row, or the header
    assert leaked(files["passwd"].read_bytes(), app) == "passwd"
    assert leaked(files["ui.py"].read_bytes(), app) == "source"


@pytest.mark.parametrize("route", FILE_ROUTES)
def test_file_routes_serve_nothing_outside_uploads(app, route):
    served = []
    for spelling in spellings(app):
        status, body = raw_get(app[2], route + spelling)
        if status < 400 or leaked(body, app):
            served.append((spelling, status, leaked(body, app)))
        assert status in (400, 403, 404, 405, 422), (route + spelling, status, body[:200])
    assert not served, served


def test_an_upload_is_served_back_and_to_another_session_too(app, web):
    data = IMAGE.read_bytes()
    response = web.post("/gradio_api/upload", files=[("files", ("mine.png", data, "image/png"))])
    assert response.status_code == 200
    (path,) = response.json()
    assert Path(path).is_relative_to(Path(app[3]) / "uploads")
    assert web.get(f"/gradio_api/file={path}").content == data  # the positive control
    # Gradio keeps no owner per upload: whoever has the URL (the content hash folder) gets the file
    with httpx.Client(base_url=app[2], timeout=30) as stranger:
        assert stranger.get(f"/gradio_api/file={path}").content == data
    # .. out of the upload folder, even starting from a real upload, stays refused
    db = secrets(app)["db"]
    status, body = raw_get(app[2], f"/gradio_api/file={Path(path).parent}/../../db/{db.name}")
    assert status in (403, 404) and not leaked(body, app)


def valid_data(web, name: str) -> list:
    """Good inputs for endpoint `name`, in the raw form the page sends (files uploaded first)."""
    image, sound = upload(web, "5.png", IMAGE.read_bytes()), upload(web, "siren.wav", SOUND.read_bytes())
    return {
        "answer": [image, QUESTION, None],
        "caption": [image, None, 1],
        "classify_image": [image, None],
        "classify_zero_shot": [image, "a, b", None],
        "classify_audio": [sound, None],
        "transcribe": [sound, None],
        "compare": ["image-classification", image, "", ["efficientnet-lite0", "mmdemo-scene-classifier"]],
    }[name]


@pytest.mark.parametrize("name", MODEL_ENDPOINTS)
def test_model_endpoints_cannot_be_run_past_the_queue(web, name):
    for route in (f"/gradio_api/run/{name}", f"/gradio_api/api/{name}", f"/gradio_api/run/{name}/"):
        response = web.post(route, json={"data": valid_data(web, name)})
        assert response.status_code == 404, (route, response.status_code, response.text[:300])
        assert "join the queue" in response.text


def test_feedback_runs_unqueued_by_design(app, web):
    client = Client(app[2], verbose=False)
    client.predict(handle_file(str(IMAGE)), QUESTION, None, api_name="/answer")
    body = {"data": ["ask", "👍", "", "", ""], "session_hash": client.session_hash}
    response = web.post("/gradio_api/run/feedback", json=body)
    assert response.status_code == 200, response.text
    assert response.json()["data"][0].startswith("Saved 👍")


def call_result(web, name: str, event_id: str) -> tuple[str, str]:
    """The last SSE event of a /call and its data."""
    event, data = "", ""
    with web.stream("GET", f"/gradio_api/call/{name}/{event_id}", timeout=120) as response:
        for line in response.iter_lines():
            if line.startswith("event:"):
                event = line.removeprefix("event:").strip()
            elif line.startswith("data:"):
                data = line.removeprefix("data:").strip()
                if event in ("complete", "error"):
                    break
    return event, data


def test_the_call_api_goes_through_the_queue_and_its_limits(app, web, monkeypatch):
    """/call/<name> is Gradio's REST face of the queue (not a bypass): it gets the same concurrency limit and is
    refused with 503 when the queue is full."""
    import mmdemo

    ui = app[0]
    gate, running, real = threading.Event(), [], mmdemo.pipeline

    def gated(task, **kwargs):
        running.append(task)
        gate.wait(60)
        return real(task, **kwargs)

    monkeypatch.setattr(mmdemo, "pipeline", gated)
    body = {"data": valid_data(web, "answer")}
    try:
        accepted, refused = [], []
        for _ in range(ui.MODEL_CONCURRENCY + QUEUE_SIZE + 3):
            response = web.post("/gradio_api/call/answer", json=body)
            (accepted if response.status_code == 200 else refused).append(response)
            time.sleep(0.2)  # let the queue start the first ones
        time.sleep(1)
        assert len(running) == ui.MODEL_CONCURRENCY, running  # no more model calls at once than the limit
        assert refused and all(r.status_code == 503 and "Queue is full" in r.text for r in refused)
        assert len(accepted) == ui.MODEL_CONCURRENCY + QUEUE_SIZE
    finally:
        gate.set()
    for response in accepted:
        event, data = call_result(web, "answer", response.json()["event_id"])
        assert event == "complete" and json.loads(data)[0]["label"] == "brown", (event, data)


def test_events_without_an_api_name_are_not_callable_by_name(app, web):
    private = ["review", "review_export", "send_feedback", "send_compare_feedback", "_answer_if_image", "predict"]
    private += ["lambda", "stop", "heard", "0"]
    for name in private:
        for route in (f"/gradio_api/run/{name}", f"/gradio_api/call/{name}"):
            response = web.post(route, json={"data": [PASSWORD, "csv", "", ""]})
            assert 400 <= response.status_code < 500, (route, response.status_code, response.text[:300])
            assert "Traceback" not in response.text
    # the review opens only with the password, also when called by its index (as the page does)
    review = next(i for i, fn in app[1].fns.items() if fn.name == "review")
    response = web.post("/gradio_api/run/predict", json={"data": ["wrong", "", "", "any", False], "fn_index": review})
    assert "Wrong password" in response.text and CANARY not in response.text


def test_the_api_documents_exactly_the_public_endpoints(app, web):
    api = Client(app[2], verbose=False).view_api(print_info=False, return_format="dict")
    assert set(api["named_endpoints"]) == API
    assert not api["unnamed_endpoints"]
    info = web.get("/gradio_api/info").json()
    assert set(info["named_endpoints"]) == API and not info["unnamed_endpoints"]


@pytest.mark.parametrize("path", ["/monitoring", "/monitoring/summary", "/monitoring/x", "/gradio_api/monitoring"])
def test_monitoring_is_off(web, path):
    response = web.get(path)
    assert response.status_code in (403, 404), (path, response.status_code)
    assert "dashboard" not in response.text.lower()


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/gradio_api/vibe-code"),
        ("POST", "/gradio_api/vibe-edit"),
        ("POST", "/gradio_api/undo-vibe-edit"),
        ("GET", "/gradio_api/run-history/records"),
        ("GET", "/gradio_api/run-history/buckets"),
        ("GET", "/gradio_api/profiling/traces"),
        ("GET", "/gradio_api/proxy=http://127.0.0.1:1/x"),
        ("GET", "/gradio_api/file=http://127.0.0.1:1/x"),
    ],
)
def test_developer_and_proxy_routes_are_refused(web, method, path):
    response = web.request(method, path, json={"prompt": "x"} if method == "POST" else None)
    assert 400 <= response.status_code < 500, (path, response.status_code, response.text[:200])
    assert "Traceback" not in response.text


EVIL = "https://evil.example"


def cors_requests(web, origin: str) -> dict[str, httpx.Response]:
    headers = {"Origin": origin}
    upload = [("files", ("x.png", IMAGE.read_bytes(), "image/png"))]
    join = {"data": valid_data(web, "answer"), "fn_index": 0, "session_hash": uuid.uuid4().hex}
    return {
        "GET /": web.get("/", headers=headers),
        "GET /config": web.get("/config", headers=headers),
        "GET /gradio_api/info": web.get("/gradio_api/info", headers=headers),
        "POST /gradio_api/upload": web.post("/gradio_api/upload", files=upload, headers=headers),
        "POST /gradio_api/queue/join": web.post("/gradio_api/queue/join", json=join, headers=headers),
        "OPTIONS /gradio_api/queue/join": web.options(
            "/gradio_api/queue/join",
            headers={
                **headers,
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "content-type",
            },
        ),
        "GET /healthz": web.get("/healthz", headers=headers),
    }


@pytest.mark.parametrize("origin", [EVIL, "null", "http://127.0.0.1.evil.example", "http://localhost.evil.example"])
def test_foreign_origins_get_no_cors_grant(web, origin):
    for what, response in cors_requests(web, origin).items():
        granted = response.headers.get("access-control-allow-origin")
        assert granted in (None, ""), (what, granted)


def test_loopback_origins_are_granted(app, web):
    origin = app[2]  # the page's own origin
    for what, response in cors_requests(web, origin).items():
        if what != "GET /healthz":  # our own route: same-origin only, no CORS needed
            assert response.headers.get("access-control-allow-origin") == origin, what


def test_an_upload_over_the_size_limit_is_refused(app, web):
    big = b"\x89PNG\r\n\x1a\n" + b"\0" * (10 * 1024 * 1024)
    response = web.post("/gradio_api/upload", files=[("files", ("big.png", big, "image/png"))])
    assert response.status_code == 413, response.text[:300]
    assert not [p for p in (Path(app[3]) / "uploads").rglob("big.png")]  # nothing of it kept
    ok = web.post("/gradio_api/upload", files=[("files", ("ok.png", IMAGE.read_bytes(), "image/png"))])
    assert ok.status_code == 200


def test_many_files_in_one_upload_are_bounded_and_the_app_keeps_serving(app, web):
    many = [("files", (f"f{i}.png", f"{i}".encode() * 10, "image/png")) for i in range(200)]
    response = web.post("/gradio_api/upload", files=many)
    assert response.status_code in (200, 400, 413), response.status_code
    if response.status_code == 200:
        assert len(response.json()) == 200
    too_many = [("files", (f"g{i}.png", f"g{i}".encode(), "image/png")) for i in range(1001)]
    response = web.post("/gradio_api/upload", files=too_many)
    assert 400 <= response.status_code < 500, response.status_code  # Gradio's parser stops at 1,000 files
    assert "Traceback" not in response.text
    assert web.get("/healthz").status_code == 200


# --- hostile payloads through the queue ---


def fn_index(demo, api_name: str) -> int:
    return next(i for i, fn in demo.fns.items() if fn.api_name == api_name)


def join(app, web, api_name: str, data: list) -> tuple[int, dict | str]:
    """Send `data` raw to /gradio_api/queue/join as the page does; (status, the final message or the refusal)."""
    session = uuid.uuid4().hex
    body = {"data": data, "fn_index": fn_index(app[1], api_name), "session_hash": session, "event_data": None}
    headers = {"Content-Type": "application/json"}  # json.dumps escapes lone surrogates; httpx's json= cannot
    response = web.post("/gradio_api/queue/join", content=json.dumps(body), headers=headers)
    if response.status_code != 200:
        return response.status_code, response.text
    with web.stream("GET", "/gradio_api/queue/data", params={"session_hash": session}, timeout=120) as stream:
        for line in stream.iter_lines():
            if line.startswith("data:"):
                message = json.loads(line.removeprefix("data:"))
                if message.get("msg") == "process_completed":
                    return 200, message
    raise AssertionError(f"no result for {api_name} {str(data)[:200]}")


def file_data(path) -> dict:
    return {"path": str(path), "meta": {"_type": "gradio.FileData"}}


def upload(web, name: str, data: bytes) -> dict:
    response = web.post("/gradio_api/upload", files=[("files", (name, data, "application/octet-stream"))])
    assert response.status_code == 200, response.text
    return {**file_data(response.json()[0]), "orig_name": name}


def hostile_cases(web) -> list[tuple[str, list]]:
    image, sound = upload(web, "5.png", IMAGE.read_bytes()), upload(web, "siren.wav", SOUND.read_bytes())
    junk_png = upload(web, "junk.png", b"this is not an image\n" * 50)
    junk_wav = upload(web, "junk.wav", b"RIFF....WAVEfmt " + b"\xff" * 100)
    outside = [file_data("/etc/passwd"), file_data(ROOT / "app.py"), file_data("../../../../etc/passwd")]
    outside += [{"path": "/etc/passwd"}, {"url": "file:///etc/passwd", "path": "x"}, file_data("/nonexistent/a.png")]
    wrong = [123, -1, 1.5, True, [], ["a"], {}, {"a": 1}, None, "x" * 1_000_000, "a\x00b", "\x1b[31m\x07\x08", "\ud800"]
    models = ["no-such-model", "../../assets/models/vqa-easy", "/etc", str(ROOT / "assets" / "models" / "vqa-easy")]
    models += ["../../../../etc/passwd", "mmdemo-vqa-easy\x00", 5, ["mmdemo-vqa-easy"], {"a": 1}]
    cases = []
    for f in [*outside, junk_png, "not a file dict", 42, ["a"]]:
        cases += [
            ("answer", [f, QUESTION, None]),
            ("caption", [f, None, 1]),
            ("classify_image", [f, None]),
            ("classify_zero_shot", [f, "a, b", None]),
            ("compare", ["visual-question-answering", f, QUESTION, ["mmdemo-vqa-easy", "mmdemo-vqa-easy"]]),
        ]
    for f in [*outside, junk_wav, junk_png]:
        cases += [("classify_audio", [f, None]), ("transcribe", [f, None])]
    for w in wrong:
        cases += [("answer", [image, w, None]), ("classify_zero_shot", [image, w, None])]
        cases += [("compare", [w, image, QUESTION, ["mmdemo-vqa-easy", "mmdemo-vqa-easy"]])]
        cases += [("compare", ["visual-question-answering", image, w, ["mmdemo-vqa-easy", "mmdemo-vqa-easy"]])]
        cases += [("compare", ["image-classification", image, "", w])]
    for beams in [-1, 0, 6, 10**9, -(10**18), 1e308, "abc", None, [1]]:
        cases.append(("caption", [image, None, beams]))
    for m in models:
        cases += [("answer", [image, QUESTION, m]), ("caption", [image, m, 1]), ("classify_image", [image, m])]
        cases += [("classify_audio", [sound, m]), ("transcribe", [sound, m])]
        cases += [("compare", ["image-classification", image, "", ["efficientnet-lite0", m]])]
    cases += [("classify_zero_shot", [image, ", ".join(f"label {i}" for i in range(1000)), None])]
    cases += [("compare", ["image-classification", image, "", ["efficientnet-lite0"] * 1000])]
    cases += [(name, []) for name in MODEL_ENDPOINTS] + [(name, [None] * 9) for name in MODEL_ENDPOINTS]
    return cases


def strings_in(value) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        value = list(value.values())
    return [s for v in value for s in strings_in(v)] if isinstance(value, list) else []


def echoes_removed(message: str, data: list) -> str:
    """`message` with the caller's own strings taken out: quoting a caller's value back (Gradio's "Value: ... is not
    in the list of choices") leaks nothing, however long or path-like it is."""
    for s in sorted(strings_in(data), key=len, reverse=True):
        if len(s) > 2:
            message = message.replace(s, "<input>")
    return message


def test_hostile_payloads_get_a_4xx_or_a_readable_message_and_the_app_keeps_serving(app, web):
    ui, _, url, home = app
    forbidden = (str(ROOT), str(home), "site-packages", "/tmp/", "/root/")
    failures = []
    for name, data in hostile_cases(web):
        status, result = join(app, web, name, data)
        case = f"{name} {json.dumps(data)[:160]}"
        if status != 200:
            if not 400 <= status < 500 or "Traceback" in result:
                failures.append((case, status, result[:300]))
            continue
        output = result["output"]
        if result["success"]:
            continue  # accepted and answered: a bad value read as a usable one (an int as a text, say)
        message = output.get("error")
        try:
            assert message, "an error with no message (Gradio's generic one)"
            assert_user_message(echoes_removed(message, data), *forbidden)
        except AssertionError as e:
            failures.append((case, str(e)[:300]))
    assert not failures, "\n".join(map(str, failures))
    assert web.get("/healthz").status_code == 200
    label, _ = Client(url, verbose=False).predict(handle_file(str(IMAGE)), QUESTION, None, api_name="/answer")
    assert label["label"] == "brown"


@pytest.mark.parametrize(
    ("args", "api_name", "message"),
    [
        ((handle_file(str(IMAGE)), "x" * 1_000_000, None), "/answer", "too long"),
        ((handle_file(str(IMAGE)), "what\x00 color is it?", None), "/answer", None),
        ((handle_file(str(IMAGE)), QUESTION, "../../assets/models/vqa-easy"), "/answer", "mmdemo-vqa-easy"),
        ((handle_file(str(IMAGE)), None, -5), "/caption", None),
        ((handle_file(str(IMAGE)), None, 10**9), "/caption", None),
        ((handle_file(str(IMAGE)), ",".join(["cat"] * 1000), None), "/classify_zero_shot", None),
        ((handle_file(str(SOUND)), "/etc/passwd"), "/classify_audio", "mmdemo-sounds"),
        (("image-to-text", handle_file(str(IMAGE)), "", ["a", "b", "c", "d", "e"]), "/compare", "Pick 2 to 4"),
        (("../etc", handle_file(str(IMAGE)), "", ["a", "b"]), "/compare", "not in the list of choices"),
        (
            (
                "visual-question-answering",
                handle_file(str(IMAGE)),
                QUESTION,
                ["mmdemo-vqa-easy", str(ROOT / "assets/models/vqa-easy")],
            ),
            "/compare",
            "Unknown model",
        ),
        (({"a": 1}, 5, 6, "models"), "/compare", None),
    ],
)
def test_hostile_calls_through_gradio_client_get_a_message(app, args, api_name, message):
    client = Client(app[2], verbose=False)
    try:
        result = client.predict(*args, api_name=api_name)
    except Exception as e:
        text = str(e)
        assert "upstream Gradio app has raised an exception" not in text, text  # Gradio's opaque fallback
        assert_user_message(echoes_removed(text, list(args)), str(ROOT), str(app[3]), "/tmp/")
        if message:
            assert message in text, text
    else:
        assert message is None, f"accepted: {str(result)[:200]}"
    assert client.predict(handle_file(str(IMAGE)), QUESTION, None, api_name="/answer")[0]["label"] == "brown"


def test_hostile_feedback_through_run_gets_a_message(app, web):
    client = Client(app[2], verbose=False)
    client.predict(handle_file(str(IMAGE)), QUESTION, None, api_name="/answer")
    session = client.session_hash
    bad = [
        [{"a": 1}, "👍", "", "", ""],
        ["ask", 5, "", "", ""],
        ["ask", "👍", "x" * 1_000_000, "", ""],
        ["ask", "👍", ["a"], {"b": 1}, 7],
        ["../../etc/passwd", "👍", "", "", ""],
        ["ask", "\x00", "", "", ""],
        [None, None, None, None, None],
        ["ask"],
    ]
    for data in bad:
        response = web.post("/gradio_api/run/feedback", json={"data": data, "session_hash": session})
        text = response.text
        assert "Traceback" not in text and str(ROOT) not in text and str(app[3]) not in text, text[:300]
        if response.status_code >= 500:  # Gradio's /run answers any error with 500 and the message as JSON
            assert_user_message(response.json()["error"] or "", str(ROOT), str(app[3]))
        else:
            assert response.status_code in (200, 422), (data, response.status_code, text[:300])
    assert web.get("/healthz").status_code == 200


def test_every_model_event_keeps_the_shared_concurrency_limit(app):
    """Gradio sets a concurrency group's limit to the lowest limit of its events, at the first call of each: an event
    left at the default limit (1) would halve the model's concurrency for good once someone used it."""
    ui, demo = app[0], app[1]
    model_events = [fn for fn in demo.fns.values() if fn.concurrency_id == "model"]
    assert len(model_events) >= 7
    assert {fn.concurrency_limit for fn in model_events} == {ui.MODEL_CONCURRENCY}, [
        (fn.name, fn.concurrency_limit) for fn in model_events if fn.concurrency_limit != ui.MODEL_CONCURRENCY
    ]
    client = Client(app[2], verbose=False)
    client.predict(handle_file(str(SOUND)), None, api_name="/transcribe")
    assert demo._queue.event_queue_per_concurrency_id["model"].concurrency_limit == ui.MODEL_CONCURRENCY
