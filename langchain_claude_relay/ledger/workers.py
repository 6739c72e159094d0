"""Whether this process is a ``multiprocessing.Pool`` worker: there a ledger commits in ``record``.

A worker may end without running any exit hook: ``Pool.__exit__`` (the usual
``with Pool(4) as pool:``) calls ``terminate()``, which sends SIGTERM, and the worker dies
without ``atexit`` or ``multiprocessing``'s finalizers. An entry still queued for the
write-behind thread would be lost with it, so the persistent ledgers commit each entry before
``record`` returns in a worker (a commit per call there; the main process keeps its
write-behind).

>>> in_multiprocessing_worker()   # the interpreter running this is no worker
False
"""

from __future__ import annotations

import sys


def in_multiprocessing_worker() -> bool:
    """Whether this process is a ``multiprocessing.Pool`` worker (any start method).

    Only a ``Pool``'s workers are ended by SIGTERM as a matter of course; other processes
    ``multiprocessing`` starts (a ``Process``, ``ProcessPoolExecutor`` or server workers such
    as uvicorn's) end normally and commit at exit, keeping the write-behind off their hot
    path. ``Pool`` names its workers ``ForkPoolWorker-N``, ``SpawnPoolWorker-N``,
    ``ForkServerPoolWorker-N``. Cheap enough for every ``record``: it reads two globals.
    """
    module = sys.modules.get("multiprocessing")
    if module is None or module.parent_process() is None:
        return False
    return "PoolWorker-" in module.current_process().name
