"""Test helper: the sockets a test left for the garbage collector (shared by the test folders)."""

from __future__ import annotations

import gc
import warnings
from urllib.parse import urlsplit


def socket_warnings_on_collection(base_url: str) -> list[str]:
    """The ``ResourceWarning``s of sockets to ``base_url``'s port (or of asyncio transports)
    that a garbage collection run now raises."""
    port = str(urlsplit(base_url).port)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        gc.collect()
    texts = [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)]
    return [t for t in texts if port in t or "transport" in t]
