"""What the start built is frozen out of the collector's full collections; a reload unfreezes it first."""

from __future__ import annotations

import gc
import weakref

from callipso_agent.daemon import freeze_heap


class _Node:
    def __init__(self) -> None:
        self.me = self  # a reference cycle: only the garbage collector frees it


def test_a_reload_lets_the_collector_free_what_it_replaced() -> None:
    try:
        old = _Node()
        gone = weakref.ref(old)
        assert freeze_heap() > 1000 and gc.get_freeze_count() > 1000
        del old  # replaced by a reload: now unreachable, but frozen
        gc.collect()
        assert gone() is not None  # a frozen cycle is not collected...
        freeze_heap()  # ...until the next reload unfreezes, collects and freezes again
        assert gone() is None
    finally:
        gc.unfreeze()
    assert gc.get_freeze_count() == 0
