"""Handing the C heap's free pages back to the kernel.

glibc keeps freed memory in its heap for reuse, so the temporaries of a large step stay
resident for the life of the process: the node's first chain matrix ((n_in, n_in) float64
each, 0.3 MiB after an hour of a quiet 100 Hz station in ``tools.bench.window_path``), and
the records ObsPy's miniSEED reader decodes on the C heap (108 MiB after a day of
100 Hz x 3 in FLOAT32, in ``tools replay-test``).
"""

from __future__ import annotations

_MALLOC_TRIM = []  # glibc's malloc_trim, looked up once; None where the C library has none


def release_free_heap() -> None:
    """Return the C heap's free pages to the kernel (glibc ``malloc_trim(0)``, 2-50 us).

    A no-op on a C library without ``malloc_trim`` (musl).
    """
    if not _MALLOC_TRIM:
        import ctypes  # numpy has imported it already: no extra memory

        try:
            _MALLOC_TRIM.append(ctypes.CDLL(None).malloc_trim)
        except (OSError, AttributeError):
            _MALLOC_TRIM.append(None)
    if _MALLOC_TRIM[0] is not None:
        _MALLOC_TRIM[0](0)
