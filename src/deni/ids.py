"""Row ids: UUIDv7, made by every layer that writes rows (services and adapters alike).

Not a rule of the domain (it reads the wall clock and the system's randomness) and not a port
(nothing about it varies between production and tests), so it sits beside config and i18n.
"""

from __future__ import annotations

import secrets
import threading
import time
import uuid

_UUID7_COUNTER_MAX = 0xFFF
_id_lock = threading.Lock()
_id_state = (0, 0)  # (unix ms, counter within that ms) of the last id made here


def new_id() -> str:
    """A UUIDv7 (RFC 9562): time-ordered, with a counter in rand_a, so rows written in the
    same instant (one notification each for borrower and lender, say) still sort in the order
    they were made. 62 random bits keep ids unguessable.

    The wall clock here only orders ids; business time always comes from the Clock port.
    """
    global _id_state
    with _id_lock:
        unix_ms = time.time_ns() // 1_000_000
        last_ms, counter = _id_state
        if unix_ms > last_ms:
            counter = 0
        else:  # same millisecond, or the wall clock stepped back: keep counting up
            unix_ms, counter = last_ms, counter + 1
            if counter > _UUID7_COUNTER_MAX:
                unix_ms, counter = last_ms + 1, 0
        _id_state = (unix_ms, counter)
    value = (unix_ms << 80) | (0x7 << 76) | (counter << 64) | (0b10 << 62) | secrets.randbits(62)
    return str(uuid.UUID(int=value))
