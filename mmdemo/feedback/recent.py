"""What each session was last shown, kept on the server, so that feedback records the output as the model produced
it (never as a client sends it back) and a retry of the same feedback updates one row.

    recent = RecentResults()
    recent.remember(session, "ask", {"task": ..., "model": ..., "output": result, "media": path, ...})
    record = recent.get(session, "ask")  # the same dict, with its "key" (the idempotency key of its feedback)

Bounded: the newest MAX_SESSIONS sessions, MAX_SLOTS results each; older ones are forgotten (their feedback is then
refused with a message asking to run the model again).
"""

import threading
import uuid
from collections import OrderedDict

MAX_SESSIONS = 10_000
MAX_SLOTS = 16  # a tab's result, or one per compared model


class RecentResults:
    def __init__(self, max_sessions: int = MAX_SESSIONS, max_slots: int = MAX_SLOTS):
        self.max_sessions, self.max_slots = max_sessions, max_slots
        self._sessions: OrderedDict[str, OrderedDict[str, dict]] = OrderedDict()
        self._lock = threading.Lock()

    def remember(self, session: str, slot: str, record: dict) -> str:
        """Keep `record` as what `session` now sees in `slot`; returns its new feedback key."""
        record = {**record, "key": uuid.uuid4().hex}
        with self._lock:
            slots = self._sessions.setdefault(session, OrderedDict())
            self._sessions.move_to_end(session)
            slots[slot] = record
            slots.move_to_end(slot)
            while len(slots) > self.max_slots:
                slots.popitem(last=False)
            while len(self._sessions) > self.max_sessions:
                self._sessions.popitem(last=False)
        return record["key"]

    def get(self, session: str, slot: str) -> dict | None:
        with self._lock:
            record = self._sessions.get(session, {}).get(slot)
            return dict(record) if record else None

    def forget(self, session: str, slot: str) -> None:
        with self._lock:
            self._sessions.get(session, {}).pop(slot, None)
