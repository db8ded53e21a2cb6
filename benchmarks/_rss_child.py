"""Child process of ``perf.py``'s RSS rows: stream one object back in 4 MiB reads, print the peak
RSS above the warmed-up baseline (psutil sampled every 2 ms) as JSON.

    python benchmarks/_rss_child.py BACKEND CLIENT ENDPOINT KEY SECRET KEY_URI PATH
    BACKEND: s3 | oss;  CLIENT: envstore | plain;  PATH: bucket/key
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

STEP = 4 << 20


def opener(backend: str, client: str, endpoint: str, key: str, secret: str, key_uri: str) -> Any:
    """A function path -> readable file object for the chosen client."""
    import fsspec

    if backend == "s3":
        inner = {"endpoint_url": endpoint, "key": key, "secret": secret}
    else:
        inner = {"endpoint": endpoint, "key": key, "secret": secret}
    if client == "envstore":
        fs = fsspec.filesystem(
            "envstore", target_protocol=backend, target_options=inner, key_uri=key_uri
        )
        return lambda path: fs.open(path, "rb")
    if backend == "s3":
        fs = fsspec.filesystem("s3", **inner)
        return lambda path: fs.open(path, "rb")
    import oss2

    def oss_open(path: str) -> Any:
        bucket, name = path.split("/", 1)
        return oss2.Bucket(oss2.Auth(key, secret), endpoint, bucket).get_object(name)

    return oss_open


def drain(open_fn: Callable[[str], Any], path: str) -> int:
    n = 0
    f = open_fn(path)
    try:
        while chunk := f.read(STEP):
            n += len(chunk)
    finally:
        if hasattr(f, "close"):
            f.close()
    return n


def main() -> None:
    import psutil

    backend, client, endpoint, key, secret, key_uri, path = sys.argv[1:8]
    open_fn = opener(backend, client, endpoint, key, secret, key_uri)
    drain(open_fn, path.rsplit("/", 1)[0] + "/warm-" + client)  # imports, pools, ciphers
    proc = psutil.Process()
    base = proc.memory_info().rss
    peak = [base]
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], proc.memory_info().rss)
            time.sleep(0.002)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    t0 = time.perf_counter()
    n = drain(open_fn, path)
    seconds = time.perf_counter() - t0
    stop.set()
    sampler.join()
    peak[0] = max(peak[0], proc.memory_info().rss)
    print(json.dumps({"extra": peak[0] - base, "seconds": seconds, "bytes": n}))


if __name__ == "__main__":
    main()
