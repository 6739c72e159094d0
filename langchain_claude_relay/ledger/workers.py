"""Whether this process is a ``multiprocessing`` worker: there a ledger commits inside ``record``.

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
    """Whether ``multiprocessing`` started this process (a ``Pool`` worker or a ``Process``).

    Cheap enough for every ``record``: a worker always has ``multiprocessing`` loaded (any
    start method), and ``parent_process()`` only reads a global.
    """
    module = sys.modules.get("multiprocessing")
    return module is not None and module.parent_process() is not None
