"""What replay-test sent to a node, and the counters the node must then report."""

from __future__ import annotations


class Ledger:
    """What was sent: frames per board session (between unplugs) and faults injected.

    One byte per frame sent (1: intact, 0: damaged), a bytearray per session: a day of
    100 Hz in 10-sample frames is 864,000 frames, 0.8 MiB here where a list of
    ``(sequence, intact)`` tuples held ~80 MiB.
    """

    def __init__(self):
        self.sessions = [bytearray()]  # per session: intact flag of each frame, in order
        self.unplugs = 0
        self.frames_unsent = 0

    def sent(self, sequence: int, intact: bool) -> None:
        self.sessions[-1].append(1 if intact else 0)

    def unplugged(self, frames_lost: int) -> None:
        self.unplugs += 1
        self.frames_unsent += frames_lost
        self.sessions.append(bytearray())

    def expected(self, outcomes: dict | None = None) -> dict:
        """Counters the node must report if it handled every frame correctly.

        ``outcomes``: :attr:`tools.replay.faults.FaultInjector.outcomes`, frames sent twice
        (``duplicates``), held back and put back in place (``reordered``) or held past the
        reorder window (``late``: counted stale and late, not lost).
        """
        outcomes = {"duplicates": 0, "reordered": 0, "late": 0, **(outcomes or {})}
        intact = sum(s.count(1) for s in self.sessions)
        lost = 0
        for s in self.sessions:
            # Damaged frames between the first and last intact one of a session are lost;
            # before the first or after the last the node cannot tell they were sent.
            first, last = s.find(1), s.rfind(1)
            if first >= 0:
                lost += s.count(0, first, last + 1)
        return {"frames_sent": sum(len(s) for s in self.sessions) + outcomes["duplicates"],
                "frames_intact": intact + outcomes["duplicates"], "frames_lost": lost,
                "unplugs": self.unplugs, "frames_unsent": self.frames_unsent,
                "frames_duplicate": outcomes["duplicates"], "frames_reordered": outcomes["reordered"],
                "frames_late": outcomes["late"]}


def check_ledger(expected: dict, status: dict) -> list[dict]:
    """Ledger against the node's counters: ``[{check, expected, got, ok}]``."""
    dec, pipe = status.get("decoder", {}), status.get("pipeline", {})
    # Every decoded frame is accepted or dropped for a counted reason.
    handled = sum(pipe.get(k, 0) for k in ("frames", "frames_rejected", "frames_duplicate",
                                           "frames_stale", "frames_other_board"))
    checks = [("frames decoded = frames sent intact", expected["frames_intact"], dec.get("frames")),
              ("frames accepted + dropped by reason = decoded", dec.get("frames"), handled),
              ("frames lost (sequence gaps) = damaged between intact frames", expected["frames_lost"],
               pipe.get("frames_lost")),
              ("board restarts seen = unplugs", expected["unplugs"], pipe.get("sequence_resets")),
              ("frames sent twice = duplicates", expected.get("frames_duplicate", 0),
               pipe.get("frames_duplicate")),
              ("frames held back and put back = reordered", expected.get("frames_reordered", 0),
               pipe.get("frames_reordered")),
              ("frames held past the window = stale", expected.get("frames_late", 0),
               pipe.get("frames_stale")),
              ("frames held past the window = late", expected.get("frames_late", 0), pipe.get("frames_late")),
              ("port reopened >= unplugs", expected["unplugs"], status.get("reconnects"))]
    out = []
    for name, want, got in checks:
        ok = got is not None and (got >= want if ">=" in name else got == want)
        out.append({"check": name, "expected": want, "got": got, "ok": bool(ok)})
    return out
