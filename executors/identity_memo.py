"""A memo of values derived from live objects, keyed by identity, bounded in bytes.

Some conversions at the TensorFlow boundary are paid again and again for the same object: a
client's sequence becomes element lists on every round, a model broadcast to a hundred clients
becomes the same tensors a hundred times. `IdentityMemo` keeps what an object became for as long
as the object lives (a weak reference whose callback drops the entry; nothing keeps an object
alive) and at most `limit_bytes` in all (the oldest entries go first). Entries are found by the
object's identity and a tag (what the value was derived for), never by content, so a lookup costs
a dictionary access; callers that cannot rule out a change of the object check what they get.
"""
from __future__ import annotations

import threading
import weakref
from typing import Any, Hashable


class IdentityMemo:
    """Derived values per live object; thread-safe.

    The lock is re-entrant: a weak reference's callback can run inside `put`, when an allocation
    triggers a collection that frees a remembered object.
    """

    def __init__(self, limit_bytes: int):
        self._limit = limit_bytes
        self._lock = threading.RLock()
        self._entries: dict[int, tuple[weakref.ref, Hashable, Any, int]] = {}
        self._bytes = 0

    def get(self, obj: Any, tag: Hashable) -> Any:
        """The value stored for `obj` under `tag`, or None."""
        entry = self._entries.get(id(obj))
        if entry is None or entry[0]() is not obj or entry[1] != tag:
            return None
        return entry[2]

    def put(self, obj: Any, tag: Hashable, value: Any, size: int) -> None:
        """Stores `value` (holding `size` bytes) for `obj` under `tag`, replacing what `obj` had;
        nothing when `size` alone is over the limit."""
        if size > self._limit:
            return
        key = id(obj)
        reference = weakref.ref(obj, lambda _, k=key: self.forget(k))
        with self._lock:
            self._drop(key)
            while self._entries and self._bytes + size > self._limit:
                self._drop(next(iter(self._entries)))
            self._entries[key] = (reference, tag, value, size)
            self._bytes += size

    def forget(self, key: int) -> None:
        """Drops the entry of the object whose id is `key` (its weak reference died)."""
        with self._lock:
            self._drop(key)

    def _drop(self, key: int) -> None:
        entry = self._entries.pop(key, None)
        if entry is not None:
            self._bytes -= entry[3]

    @property
    def size_bytes(self) -> int:
        """Bytes the stored values hold, as their callers counted them."""
        return self._bytes
