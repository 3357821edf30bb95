"""Keeping the long-running processes' memory predictable: short full GC passes, and an RSS
that follows what is in use rather than the highest it ever was."""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import sys

#: glibc's mallopt() parameter number for the mmap threshold (malloc.h: M_MMAP_THRESHOLD)
_M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD_BYTES = 128 * 1024


def freeze_startup_heap() -> None:
    """Collect once, then move every object that exists now (modules, configuration, the app,
    TLS contexts) out of the collector's sight. Later full collections scan only what requests
    allocate, so a full pass in a process that has run for days costs what the requests left
    behind, not the whole program (the startup heap alone takes ~10-20 ms to scan: a stall that
    every stream in flight would feel)."""
    gc.collect()
    gc.freeze()


def pin_mmap_threshold(nbytes: int = MMAP_THRESHOLD_BYTES) -> bool:
    """glibc only: serve every allocation of ``nbytes`` or more from its own mmap, given back to
    the system when freed. By default glibc raises that threshold after the first large block is
    freed (up to 32 MiB), so later request bodies of a few hundred KiB to a few MiB come from the
    main heap, which only ever grows to its high-water mark: in the cancel-heavy soak the
    gateway's RSS climbed to ~280 MiB with ~20 MB of live Python objects. Setting it fixes the
    threshold (and turns the adjustment off). False where this is not glibc."""
    if not sys.platform.startswith("linux"):
        return False
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl and others have no mallopt
        return False
    return bool(mallopt(_M_MMAP_THRESHOLD, nbytes))
