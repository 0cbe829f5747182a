"""The node's two heaps: the C heap's free pages handed back to the kernel, and the Python
heap's long-lived objects kept out of the garbage collector's passes.

glibc keeps freed memory in its heap for reuse, so the temporaries of a large step stay
resident for the life of the process: the node's first chain matrix ((n_in, n_in) float64
each, 0.3 MiB after an hour of a quiet 100 Hz station in ``tools.bench.window_path``), and
the records ObsPy's miniSEED reader decodes on the C heap (108 MiB after a day of
100 Hz x 3 in FLOAT32, in ``tools replay-test``).

CPython's collector runs a young pass each time 700 more container objects are alive
than before, and a full pass over every tracked object once the survivors reach a quarter
of the old generation. Decoding a backlog makes a :class:`~edge_runtime.protocol.Frame`
per frame (about 1,700 per 256 KiB read), all alive until the read's list is handed on:
they survive young passes and bring full passes that rescan the node's whole heap
(modules, configuration, model), none of which is ever garbage. :func:`settle_python_heap`
freezes that heap once the node has started and lets a read's frames be born and die
between two young passes (``tools.bench.protocol`` measures the decoder after the same
call).
"""

from __future__ import annotations

import gc

# Objects between two young passes: more than the Frame objects of one read of a backlog
# (SerialSource.MAX_READ_BYTES / the smallest frame = 256 KiB / 32 B = 8,192).
YOUNG_PASS_OBJECTS = 10_000

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


def settle_python_heap(young_pass_objects: int = YOUNG_PASS_OBJECTS) -> int:
    """After start-up: collect once, freeze what is left (``gc.freeze``) and space the
    young passes ``young_pass_objects`` allocations apart (never closer than they are).

    Frozen objects are never scanned again nor freed by the collector (reference counting
    still frees them), so this is called once, by the node's process, after its model is
    loaded and its pipeline built; not in a process that builds and drops many nodes.

    Returns
    -------
    int
        Objects frozen.
    """
    gc.collect()
    gc.freeze()
    young, middle, old = gc.get_threshold()
    if young and young < young_pass_objects:  # 0: the collector is off; leave it so
        gc.set_threshold(young_pass_objects, middle, old)
    return gc.get_freeze_count()
