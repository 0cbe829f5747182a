"""Benchmarks (``make bench``, ``python -m tools bench``): speed against a same-run baseline.

:mod:`~tools.bench.suite` holds the registry (``BENCHES``) and the report;
:mod:`~tools.bench.common` the timing loop and models every benchmark shares; each other
module is one benchmark, also runnable alone (``python -m tools.bench.<name>``). The
package imports nothing, so a benchmark module importing ``common`` pulls in no other.
"""
