"""Time `python app.py` from launch until it serves its page, and until it is ready (/readyz answers 200 once the
bundled default models are loaded).

python scripts/startup_time.py [RUNS]
"""

import statistics
import subprocess
import sys
import time
import urllib.request

from screenshot import ROOT, free_port


def time_once() -> tuple[float, float]:
    """Seconds until the page serves, and until /readyz says ready."""
    port = free_port()
    start = time.perf_counter()
    server = subprocess.Popen(
        [sys.executable, "app.py", "--port", str(port)], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        return wait_for(server, f"http://127.0.0.1:{port}/", start), wait_for(
            server, f"http://127.0.0.1:{port}/readyz", start
        )
    finally:
        server.terminate()
        server.wait(10)


def wait_for(server: subprocess.Popen, url: str, start: float) -> float:
    while True:
        try:
            urllib.request.urlopen(url, timeout=1)  # raises on 503 (not ready yet) as on a refused connection
            return time.perf_counter() - start
        except OSError:
            if server.poll() is not None:
                raise SystemExit("app.py exited before serving") from None
            time.sleep(0.02)


if __name__ == "__main__":
    runs = [time_once() for _ in range(int(sys.argv[1]) if len(sys.argv) > 1 else 3)]
    for i, what in enumerate(("page served", "ready (/readyz 200)")):
        times = [run[i] for run in runs]
        each = ", ".join(f"{t:.2f}" for t in times)
        print(f"{what} in {statistics.median(times):.2f} s (median of {len(times)}: {each})")
