"""Heap snapshots of a running gateway, for finding what grows in a soak run. Python imports this
module at start-up when its folder is on PYTHONPATH (soak.py's --heap-snapshots puts it there
and sets LOCKGATE_TRACEMALLOC_DIR); it does nothing unless LOCKGATE_TRACEMALLOC_DIR is set:

    .venv/bin/python bench/soak.py --duration 900 --heap-snapshots /tmp/heap
    .venv/bin/python bench/soak_heapdiff.py /tmp/heap/<pid>-0003.snap /tmp/heap/<pid>-0009.snap

Every LOCKGATE_TRACEMALLOC_EVERY_S seconds (default 120) each process (forked workers included)
writes a tracemalloc snapshot (10 frames deep) to that folder. tracemalloc slows the gateway
down severalfold, so a traced run measures what grows, never how fast anything is.
"""

import os
import threading
import tracemalloc

_DIR = os.environ.get("LOCKGATE_TRACEMALLOC_DIR")


def _dump_every(folder: str, every_s: float) -> None:
    pid, n, stop = os.getpid(), 0, threading.Event()
    while not stop.wait(every_s):
        tracemalloc.take_snapshot().dump(os.path.join(folder, f"{pid}-{n:04d}.snap"))
        n += 1


def _start() -> None:
    assert _DIR is not None
    every = float(os.environ.get("LOCKGATE_TRACEMALLOC_EVERY_S", "120"))
    threading.Thread(target=_dump_every, args=(_DIR, every), daemon=True, name="heap-snapshots").start()


if _DIR:
    os.makedirs(_DIR, exist_ok=True)
    tracemalloc.start(10)
    _start()
    os.register_at_fork(after_in_child=_start)  # a forked worker has no copy of the thread
