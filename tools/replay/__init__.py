"""Replay and scoring: recorded waveforms sent as serial frames into a real node, its events scored.

Modules, lowest first (each imports only those above it):

* :mod:`~tools.replay.pty`: pseudo-terminals a node reads as a board;
* :mod:`~tools.replay.faults`: line faults (bit flips, loss, truncation, noise, unplug, drift);
* :mod:`~tools.replay.sender`: records as protocol frames, paced, to a pty or serial port;
* :mod:`~tools.replay.records`: time shift, rate fit and digitizing of a record for the node;
* :mod:`~tools.replay.node`: the node process on a pty, started and waited for;
* :mod:`~tools.replay.ledger`: frames sent against the node's counters;
* :mod:`~tools.replay.score`: events against the records' picks;
* :mod:`~tools.replay.replay_test`: all of the above per record (``tools replay-test``);
* :mod:`~tools.replay.cli`: the ``replay`` and ``replay-test`` commands.
"""
