"""Scan an archive with the node's own decisions: ``python -m tools scan ARCHIVE... --model M``.

Modules, lowest first (each imports only those above it):

* :mod:`~tools.scan.frames`: a record's counts as the frames replay-test sends, batched
  where the node's windows come out the same;
* :mod:`~tools.scan.archive`: station-days of SDS trees and folders of waveform files;
* :mod:`~tools.scan.day`: one station-day through the node's pipeline and event sink;
* :mod:`~tools.scan.outputs`: the catalogue (node JSON lines, CSV, QuakeML), the
  per-station-day statistics and the plots;
* :mod:`~tools.scan.run`: every station-day, in this process or on a Dask cluster,
  resumable; the summary with replay-test's keys;
* :mod:`~tools.scan.cli`: the ``scan`` command.
"""
