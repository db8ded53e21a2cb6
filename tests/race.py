"""Writers racing each other: ``race(n, create)`` starts ``n`` threads that call
``create(i)`` at the same moment (a barrier) and sorts them into winners and losers."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any


def race(n: int, create: Callable[[int], Any]) -> tuple[list[int], list[BaseException]]:
    barrier = threading.Barrier(n)
    won: list[int] = []
    lost: list[BaseException] = []

    def one(i: int) -> None:
        barrier.wait()
        try:
            create(i)
        except BaseException as exc:
            lost.append(exc)
        else:
            won.append(i)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return won, lost
