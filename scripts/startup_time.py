"""Time `python app.py` from launch until it serves its page (the default model is loaded first).

python scripts/startup_time.py [RUNS]
"""

import statistics
import subprocess
import sys
import time
import urllib.request

from screenshot import ROOT, free_port


def time_once() -> float:
    port = free_port()
    start = time.perf_counter()
    server = subprocess.Popen(
        [sys.executable, "app.py", "--port", str(port)], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=1)
                return time.perf_counter() - start
            except OSError:
                if server.poll() is not None:
                    raise SystemExit("app.py exited before serving") from None
                time.sleep(0.05)
    finally:
        server.terminate()
        server.wait(10)


if __name__ == "__main__":
    runs = [time_once() for _ in range(int(sys.argv[1]) if len(sys.argv) > 1 else 3)]
    print(f"ready in {statistics.median(runs):.2f} s (median of {len(runs)}: {', '.join(f'{r:.2f}' for r in runs)})")
