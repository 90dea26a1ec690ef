"""glibc's malloc told to keep the memory a batch frees, instead of handing it back every batch."""
from __future__ import annotations

import ctypes
import gc

# A flush joins and encodes its batch: a few buffers of about 100 KB (a replay's, a few MB).
# By default glibc serves those with mmap, or returns them from the top of its heap once
# freed, so the next batch touches fresh pages: 40,000-50,000 page faults per 100,000 bench
# messages against the naive script's 4,000 (docs/performance.md).
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # the option numbers in glibc's malloc.h
MMAP_ABOVE = 32 << 20   # allocations up to 32 MiB (glibc's highest setting) come from the heap
KEEP_FREED = 64 << 20   # free memory at the top of the heap is kept up to 64 MiB


def keep_freed_memory() -> bool:
    """Set glibc's malloc to keep freed buffers; False where the C library has no mallopt."""
    try:
        # the interpreter's own symbols, libc's among them: find_library("c") would run ldconfig
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # not glibc (musl has no mallopt)
        return False
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_ABOVE)) and bool(mallopt(M_TRIM_THRESHOLD, KEEP_FREED))


def fewer_collections() -> None:
    """Collect young garbage less often and never rescan what start-up left behind.

    Every message allocates a few hundred acyclic objects that reference counting frees; at
    Python's default (a collection every 700) the collector ran dozens of times a second and
    rescanned the templates, modules and config each full pass.
    """
    gc.freeze()
    gc.set_threshold(20_000, 50, 50)
