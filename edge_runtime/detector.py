"""Event declaration from a stream of classified windows.

A window *triggers* when the model gives it a phase probability ``1 - p(noise)`` of at
least ``trigger_prob`` and its peak filtered acceleration reaches ``min_pga_mps2``. An
event is declared after ``on_windows`` consecutive triggering windows and closed after
``off_windows`` consecutive quiet ones (or ``max_event_s``). The seed's live loop used
the same two tests (PGA >= 2 gal and p(noise) <= 0.5) but compared a percentage with 0.5;
here probabilities are probabilities.

P and S picks are the centres of the windows with the highest P and S probability
within the event: the models are trained on windows centred on the arrival.
"""

from __future__ import annotations

import itertools
from dataclasses import asdict, dataclass, field


@dataclass
class DetectorConfig:
    """Thresholds of the event declaration.

    Attributes
    ----------
    trigger_prob : float
        Minimum ``1 - p(noise)`` of a triggering window.
    min_pga_mps2 : float
        Minimum peak filtered acceleration of a triggering window in m/s^2
        (0.02 m/s^2 = 2 gal, the seed's value).
    on_windows : int
        Consecutive triggering windows that declare an event.
    off_windows : int
        Consecutive non-triggering windows that close it.
    max_event_s : float
        Longest event in s; a longer one is closed and a new one may start.
    """

    trigger_prob: float = 0.5
    min_pga_mps2: float = 0.02
    on_windows: int = 2
    off_windows: int = 8
    max_event_s: float = 120.0

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Scored:
    """One classified window: centre time (us), class probabilities, peak (m/s^2)."""

    center_us: int
    probs: dict
    peak_mps2: float

    @property
    def phase_prob(self) -> float:
        return 1.0 - self.probs.get("noise", 0.0)


@dataclass
class _Open:
    windows: list = field(default_factory=list)
    quiet: int = 0


class EventDetector:
    """Turn classified windows into events (dicts ready for JSON).

    Feed windows in time order with :meth:`update`; it returns the events that were
    declared (``type: trigger``) or closed (``type: event``) by that window.
    """

    _ids = itertools.count(1)

    def __init__(self, config: DetectorConfig = DetectorConfig(), station: str = "NODE"):
        self.config = config
        self.station = station
        self.pending: list[Scored] = []
        self.open: _Open | None = None
        self.last_center_us: int | None = None

    def triggers(self, w: Scored) -> bool:
        c = self.config
        return w.phase_prob >= c.trigger_prob and w.peak_mps2 >= c.min_pga_mps2

    def update(self, w: Scored) -> list[dict]:
        out = []
        hit = self.triggers(w)
        if self.open is None:
            self.pending = (self.pending + [w])[-self.config.on_windows:] if hit else []
            if len(self.pending) >= self.config.on_windows:
                self.open = _Open(windows=list(self.pending))
                self.pending = []
                out.append(self._summary("trigger", self.open.windows))
        else:
            self.open.windows.append(w)
            self.open.quiet = 0 if hit else self.open.quiet + 1
            duration_s = (w.center_us - self.open.windows[0].center_us) / 1e6
            if self.open.quiet >= self.config.off_windows or duration_s >= self.config.max_event_s:
                out.append(self.close())
        self.last_center_us = w.center_us
        return out

    def reset(self) -> list[dict]:
        """Close any open event (stream gap or shutdown)."""
        self.pending = []
        return [self.close()] if self.open is not None else []

    def close(self) -> dict:
        windows = self.open.windows
        if self.open.quiet:
            windows = windows[: len(windows) - self.open.quiet]
        self.open = None
        return self._summary("event", windows)

    def _summary(self, kind: str, windows: list) -> dict:
        best_p = max(windows, key=lambda s: s.probs.get("P", 0.0))
        after_p = [s for s in windows if s.center_us >= best_p.center_us] or windows
        best_s = max(after_p, key=lambda s: s.probs.get("S", 0.0))
        summary = {
            "type": kind,
            "station": self.station,
            "start_us": windows[0].center_us,
            "end_us": windows[-1].center_us,
            "p_time_us": best_p.center_us,
            "p_prob": round(best_p.probs.get("P", 0.0), 4),
            "s_time_us": best_s.center_us,
            "s_prob": round(best_s.probs.get("S", 0.0), 4),
            "pga_mps2": round(max(s.peak_mps2 for s in windows), 6),
            "n_windows": len(windows),
        }
        if kind == "event":
            summary["event_id"] = f"{self.station}-{next(self._ids)}"
        return summary
