"""Phase picks for a network: each P and S onset the node makes, with its early amplitudes.

The node does not pick phases on its own: its detector puts the P and S onsets (AIC
refined, :mod:`edge_runtime.detector`) into the event records, once when an event is
declared (``type: trigger``) and again when it closes (``type: event``). A network centre
wants each onset as a message of its own, as early as possible, with what a magnitude
needs. :class:`PickMaker` turns the records into picks:

* a pick is made for every phase whose onset is in a record (P usually at the trigger,
  S at the trigger or, when it came later, at the close); its identity is the event's
  (``event_id`` of the record's station and start) and the phase, so the trigger's and
  the closing record's P are one pick;
* the onset is released at once, with the amplitudes of the samples already there
  (``amplitude_window_s`` says how many seconds, ``amplitude_final`` false): a centre
  associates and locates on onsets, 3 s earlier than if it waited for the amplitudes;
* the same pick is released again with ``revision`` + 1 and ``amplitude_final`` true once
  the samples reach ``amplitude_s`` (3 s) after its onset, or ``wait_s`` of wall time after
  it was made if they never do (a stopped stream); an onset whose window is already full
  when it is made goes out once, final;
* a pick whose onset moved between the two records is made again with ``revision`` + 1
  (a reader keeps the highest revision of a ``pick_id``);
* records closed by a restart of the node (``closed_by``) make no picks: their trigger's
  did, before the node stopped.

A network works from picks, not from each node's own declared events: an earthquake of M3
15-30 km away moves a MEMS node's classifier and its filtered peak acceleration well below
what the node needs to declare an event of its own (``[detector] trigger_prob``,
``min_pga_mps2``, ``on_windows``), yet four such stations in the order of the waves are
an earthquake to the centre, whose association rejects a knock on one. :class:`PickTrigger`
runs a second :class:`~edge_runtime.detector.EventDetector` on the same classified windows
at the pick thresholds (``[mqtt] pick_prob``, ``pick_min_pga_mps2``, ``pick_windows``); its
records make picks too (``pick_id`` ``<event_id>-pick-P``). A pick trigger the node then
declares an event on is that event's: the event's pick of the same phase within
``MATCH_S`` of the trigger's onset revises the trigger's pick under its ``pick_id`` (whose
onset went out at once). When the weak P is not classified as P, the first triggering
window's AIC onset on the vertical is the P pick (the first arrival of a local earthquake).

The amplitudes are the early-warning measures of Wu & Kanamori (2005): the peaks of
acceleration ``pa``, velocity ``pv`` and displacement ``pd`` in the first ``amplitude_s``
after the onset, on the vertical component for P and on the larger horizontal for S.
Velocity and displacement are integrated from rest at the onset (offset and gravity
removed with the mean of the samples before it), each high-passed with a causal two-pole
Butterworth at 0.075 Hz as in that paper (:func:`peak_motion`); ``pd`` with the
hypocentral distance gives a magnitude (for example Kuyuk & Allen, 2013). On a MEMS node
the sensor's own noise, integrated twice, dominates that ``pd`` below about M4 at 15-40 km
(measured on the synthetic network: 1e-2 to 7e-2 cm of noise against 1e-3 to 8e-3 cm of
an M3's P wave); ``[mqtt] pd_highpass_hz`` raises the corner (1 Hz: noise 4e-4 to 1.5e-3
cm), at the price of under-reading earthquakes whose P pulse is longer than a second (M5
and above). Each pick says its corner (``amplitude_highpass_hz``).
"""

from __future__ import annotations

import time
from collections import OrderedDict, deque

import numpy as np

from ..detector import DetectorConfig, EventDetector, _refine
from ..event_record import event_id, iso_utc
from ..preprocess import butter_highpass_sos, sosfilt
from ..snippets import SnippetRecorder

AMPLITUDE_S = 3.0  # window after the onset for pa/pv/pd (Wu & Kanamori, 2005), s
BASELINE_S = 5.0  # samples before the onset whose mean is the offset (gravity included), s
HIGHPASS_HZ = 0.075  # corner of the high-pass after each integration (Wu & Kanamori, 2005), Hz
# Picks remembered for revisions: an event's P and S, over this many recent events.
REMEMBERED_EVENTS = 64
MATCH_S = 3.0  # a pick trigger's and an event's onsets of one phase this close are one pick, s


class PickTrigger:
    """Pick records from classified windows at the pick thresholds (see the module notes).

    Parameters
    ----------
    config : DetectorConfig
        The node's detector settings with the pick thresholds in ``trigger_prob``,
        ``min_pga_mps2`` and ``on_windows``.
    station : str
    """

    def __init__(self, config: DetectorConfig, station: str):
        self.detector = EventDetector(config, station=station)

    def update(self, window) -> list[dict]:
        """One classified window (:class:`~edge_runtime.detector.Scored`); the records it made."""
        records = self.detector.update(window)
        for record in records:
            if record["type"] == "trigger" and record.get("p_time_us") is None and self.detector.open:
                first = self.detector.open.windows
                record["p_time_us"] = _refine(first, components=[2])
                record["p_prob"] = round(max(w.phase_prob for w in first), 4)
        return records


def peak_motion(acc_mps2: np.ndarray, sampling_rate_hz: float, onset_sample: int,
                highpass_hz: float = HIGHPASS_HZ) -> tuple[float, float, float]:
    """Peak acceleration, velocity and displacement from an onset to the end of a record.

    The offset (gravity included) is the mean of the samples before the onset;
    velocity and displacement are integrated (trapezoids) from rest at the onset, and
    each is high-passed with a causal two-pole Butterworth at ``highpass_hz`` before its
    peak is taken (Wu & Kanamori, 2005).

    Parameters
    ----------
    acc_mps2 : numpy.ndarray
        ``(n_components, n)`` acceleration in m/s^2, from some time before the onset.
    sampling_rate_hz : float
        Sampling rate, Hz.
    onset_sample : int
        Index of the onset (the first sample when there is nothing before it).
    highpass_hz : float
        Corner of the high-pass of velocity and displacement, Hz.

    Returns
    -------
    pa_mps2, pv_mps, pd_m : float
        Largest absolute acceleration (m/s^2), velocity (m/s) and displacement (m) of any
        component from ``onset_sample`` on.
    """
    a = np.atleast_2d(np.asarray(acc_mps2, dtype=np.float64))
    onset_sample = int(min(max(onset_sample, 0), a.shape[1] - 1))
    before = a[:, :onset_sample] if onset_sample > 0 else a[:, :1]
    a = a[:, onset_sample:] - before.mean(axis=1, keepdims=True)
    v = _integrate(a, 1.0 / sampling_rate_hz)
    d = _integrate(v, 1.0 / sampling_rate_hz)
    sos = butter_highpass_sos(2, highpass_hz, sampling_rate_hz)
    return tuple(float(np.abs(x).max()) for x in (a, sosfilt(sos, v), sosfilt(sos, d)))


def _integrate(x: np.ndarray, dt_s: float) -> np.ndarray:
    """Cumulative trapezoids along the last axis, from 0 at the first sample."""
    steps = np.cumsum(0.5 * (x[:, 1:] + x[:, :-1]), axis=1) * dt_s
    return np.concatenate([np.zeros((len(x), 1)), steps], axis=1)


def _sig(x: float, digits: int = 6) -> float:
    return float(f"{x:.{digits}g}")


class PickMaker:
    """Picks from event records, released with their amplitudes (see the module notes).

    Parameters
    ----------
    components : sequence of str
        Component codes of the samples' columns, in order (``("E", "N", "Z")``).
    channels : sequence of str, optional
        SEED channel code of each column (``[node] channels``); unset: ``HN`` + component.
    keep_s : float
        Seconds of samples kept: an S onset first reported at an event's close must
        still be in memory then (longest event plus margins).
    identity : dict
        Fields every pick carries (``network``, ``location``), may be empty.
    amplitude_s : float
        Window after the onset for the amplitudes, s.
    wait_s : float
        Wall time after which a pick whose window never filled is released, s.
    clock : callable
        Monotonic clock, s.
    highpass_hz : float
        Corner of the high-pass of velocity and displacement (``[mqtt] pd_highpass_hz``), Hz.
    """

    def __init__(self, components, keep_s: float, identity: dict | None = None, channels=None,
                 amplitude_s: float = AMPLITUDE_S, wait_s: float | None = None, clock=time.monotonic,
                 highpass_hz: float = HIGHPASS_HZ):
        self.components = [str(c).upper() for c in components]
        self.channels = list(channels) if channels is not None and len(channels) == len(self.components) \
            else [f"HN{c}" for c in self.components]
        self.samples = SnippetRecorder(keep_s)
        self.identity = dict(identity or {})
        self.amplitude_s = amplitude_s
        self.highpass_hz = highpass_hz
        self.wait_s = amplitude_s + 2.0 if wait_s is None else wait_s
        self.clock = clock
        self.end_us: int | None = None  # time just after the latest sample
        self.pending: dict[str, tuple[float, dict]] = {}  # pick_id -> (made at, pick)
        self._made: OrderedDict = OrderedDict()  # pick_id -> (time_us, revision) last released or pending
        self._triggered: deque = deque(maxlen=2 * REMEMBERED_EVENTS)  # (phase, onset_us, pick_id)
        self._aliases: OrderedDict = OrderedDict()  # an event's pick_id -> the pick it revises
        self.made = 0

    # -------------------------------------------------------------- inputs
    def add(self, t0_us: int, rate_hz: float, samples_mps2: np.ndarray) -> list[dict]:
        """One frame of samples (``(n, n_components)`` m/s^2); the picks it completes."""
        self.samples.add(t0_us, rate_hz, samples_mps2)
        self.end_us = int(t0_us + len(samples_mps2) * 1e6 / rate_hz)
        return self._release(lambda pick, made_s: self.end_us >= self._window_end(pick))

    def from_record(self, record: dict, trigger: bool = False) -> list[dict]:
        """A trigger or closing record: the onsets of new or moved picks, and those already complete.

        ``trigger``: the record is a :class:`PickTrigger`'s, not one of the node's events.
        """
        if record.get("closed_by") or record.get("start_us") is None:
            return []
        now = self.clock()
        onsets = []
        for phase in ("P", "S"):
            onset_us = record.get(f"{phase.lower()}_time_us")
            if onset_us is None:
                continue
            pick_id = f"{event_id(record['station'], record['start_us'])}-{'pick-' if trigger else ''}{phase}"
            if trigger:
                self._triggered.append((phase, int(onset_us), pick_id))
            else:
                if pick_id not in self._aliases:
                    self._aliases[pick_id] = self._matched(phase, int(onset_us), pick_id)
                    while len(self._aliases) > 2 * REMEMBERED_EVENTS:
                        self._aliases.popitem(last=False)
                pick_id = self._aliases[pick_id]
            last = self._made.get(pick_id)
            if last is not None and last[0] == onset_us:
                continue
            # a pending amplitude revision was never sent: the new onset takes its number
            revision = last[1] if pick_id in self.pending else 1 if last is None else last[1] + 1
            pick = self._pick(record, phase, pick_id, revision, onset_us)
            if self.end_us is None or self.end_us < self._window_end(pick):
                onsets.append(self._with_amplitudes(pick, final=False))
                revision += 1
                pick["revision"] = revision
            self._made[pick_id] = (onset_us, revision)
            self._made.move_to_end(pick_id)
            while len(self._made) > 2 * REMEMBERED_EVENTS:
                self._made.popitem(last=False)
            self.pending[pick_id] = (now, pick)
        self.made += len(onsets)
        return onsets + self._release(lambda pick, made_s: self.end_us is not None
                                      and self.end_us >= self._window_end(pick))

    def _matched(self, phase: str, onset_us: int, pick_id: str) -> str:
        """An event's pick: the pick trigger's of the same phase within ``MATCH_S`` becomes it.

        The trigger's onset went out when it was made, so the event's pick revises it under
        its ``pick_id`` (a pending amplitude revision is replaced by the event's).
        """
        for k, (p, t_us, trigger_id) in enumerate(self._triggered):
            if p != phase or abs(t_us - onset_us) > MATCH_S * 1e6:
                continue
            del self._triggered[k]
            return trigger_id
        return pick_id

    def due(self) -> list[dict]:
        """Picks whose amplitude window did not fill within ``wait_s`` (the stream stopped)."""
        now = self.clock()
        return self._release(lambda pick, made_s: now - made_s >= self.wait_s)

    def flush(self) -> list[dict]:
        """Every pick still waiting, with what samples there are (the node is stopping)."""
        return self._release(lambda pick, made_s: True)

    # -------------------------------------------------------------- picks
    def _window_end(self, pick: dict) -> int:
        return int(pick["time_us"] + self.amplitude_s * 1e6)

    def _pick(self, record: dict, phase: str, pick_id: str, revision: int, onset_us: int) -> dict:
        return {"type": "pick", "pick_id": pick_id, "revision": revision, **self.identity,
                "station": record["station"], "phase": phase, "time_us": int(onset_us),
                "time": iso_utc(int(onset_us)), "probability": record.get(f"{phase.lower()}_prob"),
                "event_start_us": record["start_us"], "time_fix": record.get("time_fix"),
                "model_version": record.get("model_version")}

    def _release(self, ready) -> list[dict]:
        out = []
        for pick_id, (made_s, pick) in list(self.pending.items()):
            if ready(pick, made_s):
                del self.pending[pick_id]
                out.append(self._with_amplitudes(pick))
        self.made += len(out)
        return out

    def _columns(self, phase: str) -> list[int]:
        vertical = [i for i, c in enumerate(self.components) if c == "Z"]
        horizontal = [i for i, c in enumerate(self.components) if c != "Z"]
        columns = (vertical if phase == "P" else horizontal) or vertical or horizontal
        return columns or [0]

    def _with_amplitudes(self, pick: dict, final: bool = True) -> dict:
        """The pick with ``pa_mps2``, ``pv_mps``, ``pd_m`` over the window after its onset.

        ``final``: the pick's last amplitudes (its window full, or the stream stopped);
        false for the onset sent at once, whose amplitudes cover the samples there so far.
        """
        columns = self._columns(pick["phase"])
        pick = {**pick, "channels": [self.channels[i] for i in columns if i < len(self.channels)],
                "pa_mps2": None, "pv_mps": None, "pd_m": None, "amplitude_window_s": 0.0,
                "amplitude_highpass_hz": self.highpass_hz, "amplitude_final": final, "samples_filled": 0}
        onset_us = pick["time_us"]
        cut = self.samples.cut(int(onset_us - BASELINE_S * 1e6), self._window_end(pick))
        if cut is None:
            return pick
        t0_us, rate_hz, data, n_filled = cut
        onset = int(round((onset_us - t0_us) * rate_hz / 1e6))
        columns = [i for i in columns if i < data.shape[0]]
        if onset >= data.shape[1] or not columns:
            return pick
        pa, pv, pd = peak_motion(data[columns], rate_hz, onset, self.highpass_hz)
        pick.update(pa_mps2=_sig(pa), pv_mps=_sig(pv), pd_m=_sig(pd),
                    amplitude_window_s=round((data.shape[1] - 1 - max(onset, 0)) / rate_hz, 3),
                    samples_filled=int(n_filled))
        return pick
