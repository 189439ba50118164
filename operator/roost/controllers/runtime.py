"""What every controller shares at run time: the store, the executor, the serving backend, wake-ups.

Wake-ups replace polling between objects: kopf does not re-queue an object when an object it refers
to changes, so each reconciled object records what it refers to, and a transition of the referred
object sets the referrers' events (an in-memory index of referrers).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from roost.controllers import kube
from roost.execution import executor
from roost.storage import store

Key = tuple[str, str, str]  # (kind, namespace, name)


@dataclass
class Runtime:
    store: store.Store
    executor: executor.Executor
    kube: kube.Kube
    state_dir: Path
    serving: Any = None
    _events: dict[Key, asyncio.Event] = field(default_factory=dict)
    _refers: dict[Key, set[Key]] = field(default_factory=dict)

    def waker(self, key: Key) -> asyncio.Event:
        return self._events.setdefault(key, asyncio.Event())

    def forget(self, key: Key) -> None:
        self._events.pop(key, None)
        self._refers.pop(key, None)

    def refers(self, key: Key, targets: set[Key]) -> None:
        """Record that ``key`` depends on ``targets`` (replacing what it recorded before)."""
        self._refers[key] = targets

    def wake(self, key: Key) -> None:
        event = self._events.get(key)
        if event is not None:
            event.set()

    def wake_referrers(self, target: Key) -> list[Key]:
        """Wake every object that recorded a dependency on ``target``; return them."""
        woken = [k for k, targets in self._refers.items() if target in targets]
        for k in woken:
            self.wake(k)
        return woken
