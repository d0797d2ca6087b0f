"""The cyclic garbage collector paused for work that makes many objects and no reference
cycle: expanding 20,000 trials (its passes over the growing heap were a quarter of the
time) and reading hundreds of thousands of rows into a frame."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def no_gc() -> Iterator[None]:
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
