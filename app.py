"""The web demo: `python app.py [--host H] [--port P]` does what `mmdemo serve` does."""

import argparse

from mmdemo.cli import add_serve_args
from mmdemo.ui import build_demo, launch

demo = build_demo()  # module-level, as Gradio tooling and Spaces expect

if __name__ == "__main__":
    args = add_serve_args(argparse.ArgumentParser(description=__doc__)).parse_args()
    launch(demo, host=args.host, port=args.port)
