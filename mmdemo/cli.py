"""The `mmdemo` command: serve, models, train, eval, predict, download, feedback. Every subcommand has --help."""

import argparse
import os
import sys

from mmdemo.errors import StoreError
from mmdemo.feedback import FORMATS as FEEDBACK_FORMATS  # mmdemo.feedback imports SQLAlchemy only when used


def _serve(args) -> None:
    if args.ray:
        from mmdemo.serving.ray_app import run  # ray is imported only here

        run(args.host, args.port, args.models, args.replicas, args.ray_address)
        return
    from mmdemo.ui import launch  # gradio is imported only for this subcommand

    launch(host=args.host, port=args.port)


def add_ray_args(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    p.add_argument("--ray", action="store_true", help="serve on Ray Serve: each model in its own deployment")
    p.add_argument(
        "--ray-address", default=None, help="Ray cluster to join (default: env RAY_ADDRESS, else start one here)"
    )
    p.add_argument(
        "--models", default=None, help="with --ray: comma-separated catalog names to deploy (default: the bundled ones)"
    )
    p.add_argument("--replicas", type=int, default=1, help="with --ray: replicas of each model deployment")
    return p


def add_serve_args(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    # Gradio's own variables count too: Hugging Face Spaces set GRADIO_SERVER_NAME=0.0.0.0
    env = os.environ.get
    host = env("MMDEMO_HOST") or env("GRADIO_SERVER_NAME") or "127.0.0.1"
    port = int(env("MMDEMO_PORT") or env("GRADIO_SERVER_PORT") or "7860")
    p.add_argument("--host", default=host, help="address (env MMDEMO_HOST, else GRADIO_SERVER_NAME)")
    p.add_argument("--port", type=int, default=port, help="port (env MMDEMO_PORT, else GRADIO_SERVER_PORT)")
    return p


def _models(args) -> None:
    from mmdemo.registry import list_models

    for m in list_models(args.task):
        default = f"  [default: {', '.join(m.default_for)}]" if m.default_for else ""
        where = "offline" if m.offline else ("remote" if m.backend == "openai" else "hub")
        print(f"{m.name:28} {','.join(m.tasks):41} {m.backend:17} {where:7} {m.size:>8}  {m.license}{default}")


def _train(args) -> None:
    from mmdemo import train

    train.main(args.rest)


def _eval(args) -> None:
    from mmdemo import evaluate

    evaluate.main(args.rest)


def _predict(args) -> None:
    from mmdemo import predict

    predict.run(args.task, args.model, args.inputs, args.question, args.out, args.device, args.batch_size)


def _download(args) -> None:
    from huggingface_hub import snapshot_download

    from mmdemo.registry import catalog

    models = {m.name: m for m in catalog()}
    for name in args.names:
        info = models.get(name)
        if info is None or not info.hub_id:
            hub = ", ".join(n for n, m in models.items() if m.hub_id) or "none"
            raise ValueError(f"{name!r} is not a hub model in the catalog; hub models: {hub}")
        try:
            path = snapshot_download(info.hub_id, revision=info.revision)
        except Exception as e:  # offline, unknown repo or revision: say which model and why
            raise ValueError(f"could not download {name} ({info.hub_id}): {str(e).splitlines()[0]}") from None
        print(f"{name}: {info.hub_id}@{info.revision or 'main'} -> {path}")


def _bench(args) -> None:
    from mmdemo import bench

    bench.main(args.rest)


def _feedback_store(db: str | None):
    """The feedback store at `db` (None: env MMDEMO_FEEDBACK_DB, else the default file), which must exist."""
    from mmdemo.feedback import open_store
    from mmdemo.feedback.store import database_url

    url = database_url(db)
    if url.startswith("sqlite:///") and not os.path.exists(url.removeprefix("sqlite:///")):
        raise ValueError(f"no feedback database at {url.removeprefix('sqlite:///')} (give one with --db)")
    return open_store(url, pool_size=1)


def _feedback_export(args) -> None:
    from mmdemo.feedback import export

    with _feedback_store(args.db) as store:
        n = export(store, args.out, args.format, task=args.task, model=args.model, push_to_hub=args.push_to_hub)
    pushed = f", pushed to {args.push_to_hub}" if args.push_to_hub else ""
    print(f"{n} feedback rows -> {args.out} ({args.format}{pushed})")


def _feedback_stats(args) -> None:
    with _feedback_store(args.db) as store:
        total, summary = store.count(), store.summary()
    print(f"{total} feedback rows")
    print(f"{'task':28} {'model':36} {'rows':>6} {'👍':>5} {'👎':>5} {'👍-rate':>8}")
    for s in summary:
        rate = "-" if s["up_rate"] is None else f"{s['up_rate']:.0%}"
        print(f"{s['task']:28} {s['model'] or '-':36} {s['n']:6} {s['up']:5} {s['down']:5} {rate:>8}")


def add_feedback_parsers(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="feedback_command", required=True)
    db_help = "database path or URL: sqlite:///..., postgresql://... (default: env MMDEMO_FEEDBACK_DB, else "
    db_help += "~/.local/share/mmdemo/feedback.db)"
    s = sub.add_parser("export", help="write the feedback rows and their media to CSV, JSONL, Parquet or datasets")
    s.add_argument("--format", required=True, choices=FEEDBACK_FORMATS, help="csv, jsonl, parquet or datasets")
    s.add_argument("--out", required=True, help="output file (a folder for datasets); media go to <out stem>_media/")
    s.add_argument("--db", default=None, help=db_help)
    s.add_argument("--task", default=None, help="only rows of this task")
    s.add_argument("--model", default=None, help="only rows of this model")
    s.add_argument("--push-to-hub", default=None, metavar="REPO", help="also push a datasets export to this hub repo")
    s.set_defaults(func=_feedback_export)
    s = sub.add_parser("stats", help="rows, 👍 and 👎 per task and model")
    s.add_argument("--db", default=None, help=db_help)
    s.set_defaults(func=_feedback_stats)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mmdemo", description="An interactive demo for multimodal models.")
    sub = parser.add_subparsers(dest="command", required=True)

    s = add_serve_args(sub.add_parser("serve", help="run the web demo (what `python app.py` does)"))
    add_ray_args(s)
    s.set_defaults(func=_serve)

    s = sub.add_parser("models", help="list the model catalog, one line a model")
    s.add_argument("--task", default=None, help="only models serving this task")
    s.set_defaults(func=_models)

    for name, func, what in (("train", _train, "train a model"), ("eval", _eval, "evaluate a model")):
        s = sub.add_parser(name, help=what + " (see `mmdemo " + name + " --help`)", add_help=False)
        s.add_argument("rest", nargs=argparse.REMAINDER)
        s.set_defaults(func=func)

    s = sub.add_parser("predict", help="run a model over files, folders or a CSV, batched, to JSONL or CSV")
    s.add_argument("--task", required=True, help="task id, e.g. visual-question-answering")
    s.add_argument("--model", default=None, help="catalog name or checkpoint folder")
    s.add_argument("--question", default=None, help="the question (visual-question-answering)")
    s.add_argument("--device", default=None, help="cpu, cuda ...")
    s.add_argument("--out", default=None, help="write results to FILE.csv or FILE.jsonl (default: JSONL on stdout)")
    s.add_argument("--batch-size", type=int, default=32, help="inputs per batch")
    s.add_argument("inputs", nargs="+", help="files, folders (their media files) or a CSV (image/audio, question)")
    s.set_defaults(func=_predict)

    s = sub.add_parser("download", help="pre-fetch hub models into the Hugging Face cache (Docker images, Spaces)")
    s.add_argument("names", nargs="+", help="catalog names of hub models")
    s.set_defaults(func=_download)

    s = sub.add_parser("bench", help="the naive way and mmdemo's serving path side by side (see `mmdemo bench --help`)")
    s.set_defaults(func=_bench)

    s = sub.add_parser("feedback", help="export or summarise the testers' feedback (see `mmdemo feedback --help`)")
    add_feedback_parsers(s)
    return parser


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] in ("train", "eval", "bench"):  # their own parsers read every flag, --help included
        args = build_parser().parse_args(argv[:1])
        args.rest = argv[1:]
    else:
        args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except (ValueError, StoreError) as e:  # unknown task or model: the message lists what exists
        sys.exit(f"mmdemo: {e}")
