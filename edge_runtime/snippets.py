"""Waveform snippets of declared events: recent samples kept in memory, written as SAC.

The node keeps the last few minutes of raw samples (:class:`SnippetRecorder`); when an
event closes, the stretch from ``pre_s`` before its first window to ``post_s`` after its
last triggering window is written as one SAC file per component (:func:`write_sac`,
numpy only, little-endian, header version 6) that ObsPy, SAC and SeisBench read. Picks
go into the header (``a`` = P, ``t0`` = S, relative to the reference time, which is the
first sample), so a seismologist opens the file and sees what the node saw.

A component that carried nothing over the whole snippet (every sample the same: absent
from a two-component board or record, or a dead channel; a live accelerometer's own noise
spans several counts) is left out and named in the event (``components_missing``): a
flat line written as data would read as a quiet, working sensor.
"""

from __future__ import annotations

import logging
import math
import time
from collections import deque
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from .sink import Consumer

_UNDEF_F = -12345.0
_UNDEF_I = -12345
_UNDEF_K = b"-12345  "
# Float header words used here (index into the 70 float32 words).
_F = {"delta": 0, "depmin": 1, "depmax": 2, "b": 5, "e": 6, "a": 8, "t0": 10, "depmen": 56,
      "cmpaz": 57, "cmpinc": 58}
# Integer header words (index into the 40 int32 words).
_I = {"nzyear": 0, "nzjday": 1, "nzhour": 2, "nzmin": 3, "nzsec": 4, "nzmsec": 5, "nvhdr": 6,
      "npts": 9, "iftype": 15, "idep": 16, "iztype": 17, "leven": 35, "lpspol": 36, "lovrok": 37,
      "lcalda": 38}
# Character fields: byte offset and length within the 192-byte block.
_K = {"kstnm": (0, 8), "kevnm": (8, 16), "ka": (40, 8), "kt0": (48, 8), "kcmpnm": (160, 8),
      "knetwk": (168, 8)}
ITIME, IACC, IB = 1, 8, 9
# Orientation of the usual component codes: (azimuth, incidence) in degrees.
_ORIENTATION = {"E": (90.0, 90.0), "X": (90.0, 90.0), "N": (0.0, 90.0), "Y": (0.0, 90.0),
                "Z": (0.0, 0.0)}


def write_sac(path, data, sampling_rate_hz: float, start_us: int, station: str = "NODE",
              channel: str = "HNZ", network: str = "", event: str = "", picks_us: dict | None = None):
    """Write one evenly sampled trace as a little-endian SAC file (header version 6).

    Parameters
    ----------
    path : str or Path
        Output file; the parent folder must exist.
    data : numpy.ndarray
        ``(n,)`` samples, m/s^2 (written as float32, ``idep = IACC``).
    sampling_rate_hz : float
        Sampling rate in Hz.
    start_us : int
        UTC time of the first sample, microseconds since the epoch (the reference time).
    station, channel, network, event : str
        ``kstnm``, ``kcmpnm``, ``knetwk``, ``kevnm`` (truncated to the field widths).
    picks_us : dict, optional
        ``{"P": t_us, "S": t_us}``; written to ``a`` and ``t0`` relative to the start.
    """
    x = np.asarray(data, dtype="<f4")
    floats = np.full(70, _UNDEF_F, dtype="<f4")
    ints = np.full(40, _UNDEF_I, dtype="<i4")
    chars = bytearray(_UNDEF_K * 24)
    ref = datetime.fromtimestamp(start_us // 1_000_000, tz=timezone.utc)
    msec = (start_us % 1_000_000) / 1000.0
    # SAC stores the reference to the millisecond; b carries what is below it.
    delta = 1.0 / sampling_rate_hz
    b = (msec - math.floor(msec)) / 1000.0
    floats[_F["delta"]] = delta
    floats[_F["b"]] = b
    floats[_F["e"]] = b + (len(x) - 1) * delta
    if len(x):
        floats[_F["depmin"]], floats[_F["depmax"]], floats[_F["depmen"]] = x.min(), x.max(), x.mean()
    comp = channel[-1:].upper()
    if comp in _ORIENTATION:
        floats[_F["cmpaz"]], floats[_F["cmpinc"]] = _ORIENTATION[comp]
    ref_us = start_us - int(round(b * 1e6))
    for phase, word, kname in (("P", "a", "ka"), ("S", "t0", "kt0")):
        t = (picks_us or {}).get(phase)
        if t is not None:
            floats[_F[word]] = (t - ref_us) / 1e6
            _put(chars, kname, phase)
    ints[_I["nzyear"]] = ref.year
    ints[_I["nzjday"]] = ref.timetuple().tm_yday
    ints[_I["nzhour"]], ints[_I["nzmin"]], ints[_I["nzsec"]] = ref.hour, ref.minute, ref.second
    ints[_I["nzmsec"]] = int(math.floor(msec))
    ints[_I["nvhdr"]] = 6
    ints[_I["npts"]] = len(x)
    ints[_I["iftype"]], ints[_I["idep"]], ints[_I["iztype"]] = ITIME, IACC, IB
    ints[_I["leven"]], ints[_I["lpspol"]], ints[_I["lovrok"]], ints[_I["lcalda"]] = 1, 0, 1, 0
    _put(chars, "kstnm", station)
    _put(chars, "kcmpnm", channel)
    if network:
        _put(chars, "knetwk", network)
    if event:
        _put(chars, "kevnm", event)
    path = Path(path)
    with open(path, "wb") as fh:
        fh.write(floats.tobytes() + ints.tobytes() + bytes(chars) + x.tobytes())
    return path


def flat_components(data: np.ndarray) -> np.ndarray:
    """Components that carried no signal: every sample of the row the same.

    Parameters
    ----------
    data : numpy.ndarray
        ``(n_components, n)`` samples (counts or m/s^2).

    Returns
    -------
    numpy.ndarray
        ``(n_components,)`` bool.
    """
    data = np.asarray(data)
    if not data.shape[-1]:
        return np.ones(len(data), dtype=bool)
    return (data == data[:, :1]).all(axis=1)


def _put(chars: bytearray, name: str, text: str) -> None:
    offset, size = _K[name]
    raw = text.encode("ascii", "replace")[:size]
    chars[offset:offset + size] = raw.ljust(size)


class SnippetRecorder:
    """The last ``keep_s`` of raw samples, frame by frame, to cut event snippets from.

    Parameters
    ----------
    keep_s : float
        Seconds of samples kept (older frames are dropped).
    """

    def __init__(self, keep_s: float):
        self.keep_s = keep_s
        self._frames: deque = deque()  # (t0_us, rate_hz, (n, n_channels) float32 m/s^2)

    def add(self, t0_us: int, rate_hz: float, samples_mps2: np.ndarray) -> None:
        self._frames.append((t0_us, rate_hz, np.asarray(samples_mps2, dtype=np.float32)))
        horizon = t0_us - self.keep_s * 1e6
        while self._frames and self._frames[0][0] < horizon:
            self._frames.popleft()

    def clear(self) -> None:
        self._frames.clear()

    def cut(self, start_us: int, end_us: int):
        """Samples between ``start_us`` and ``end_us`` on one regular time base.

        Frames of the latest sampling rate are placed by their time stamps; samples
        missing between them (lost frames) are interpolated and counted.

        Returns
        -------
        tuple or None
            ``(t0_us, rate_hz, (n_channels, n) float32, n_filled)``, or None if no
            sample lies in the interval.
        """
        frames = [f for f in self._frames
                  if f[0] <= end_us and f[0] + len(f[2]) * 1e6 / f[1] >= start_us]
        if not frames:
            return None
        rate = frames[-1][1]
        frames = [f for f in frames if abs(f[1] - rate) <= 0.005 * rate]
        t0 = frames[0][0]
        period_us = 1e6 / rate
        first = max(0, int(math.ceil((start_us - t0) / period_us)))
        n_total = int(round((frames[-1][0] - t0) / period_us)) + len(frames[-1][2])
        n_channels = frames[-1][2].shape[1]
        out = np.full((n_total, n_channels), np.nan, dtype=np.float32)
        for t, _, samples in frames:
            i = int(round((t - t0) / period_us))
            if 0 <= i < n_total and samples.shape[1] == n_channels:
                out[i:i + len(samples)] = samples[:n_total - i]
        last = min(n_total, int(math.floor((end_us - t0) / period_us)) + 1)
        out = out[first:last]
        if not len(out):
            return None
        missing = np.isnan(out[:, 0])
        n_filled = int(missing.sum())
        if n_filled and (~missing).any():
            idx = np.arange(len(out))
            for c in range(n_channels):
                out[missing, c] = np.interp(idx[missing], idx[~missing], out[~missing, c])
        return int(round(t0 + first * period_us)), rate, out.T.copy(), n_filled


class SnippetWriter(Consumer):
    """Per-event waveform snippets as an output of the sink: SAC files named in the event.

    Keeps the recent samples (:class:`SnippetRecorder`); when an event closes, writes the
    stretch from ``pre_s`` before its first window (or its P pick, if earlier) to
    ``post_s`` after its last triggering window, one SAC file per component that carried
    a signal (:func:`flat_components`), and adds ``snippet`` (files, start, rate, samples
    filled, the components left out) to the event before it is written.

    Parameters
    ----------
    folder : str or Path
        Where the files go (created if missing).
    station : str
        Station code (``kstnm``, file names).
    components : sequence of str
        Component codes in channel order (``"E", "N", "Z"``); channels are ``HN<c>``.
    window_s : float
        Window length of the model, s: an event's times are window centres.
    pre_s, post_s : float
        Seconds kept before the first and after the last window, s.
    keep_s : float
        Seconds of samples kept in memory (longest event plus margins).
    faults : LimitedLog
        The node's rate limiter.
    """

    name = "snippets"

    def __init__(self, folder, station: str, components, window_s: float, pre_s: float, post_s: float,
                 keep_s: float, faults):
        self.folder = Path(folder)
        self.station = station
        self.components = list(components)
        self.window_s = window_s
        self.pre_s = pre_s
        self.post_s = post_s
        self.recorder = SnippetRecorder(keep_s)
        self.faults = faults

    def on_samples(self, t0_us: int, rate_hz: float, samples_mps2: np.ndarray) -> None:
        self.recorder.add(t0_us, rate_hz, samples_mps2)

    def cut(self, event: dict):
        """Raw samples around a closed event (see :meth:`SnippetRecorder.cut`)."""
        first = min(t for t in (event.get("start_us"), event.get("p_time_us")) if t is not None)
        start = first - int((self.pre_s + self.window_s / 2) * 1e6)
        end = event["end_us"] + int((self.post_s + self.window_s / 2) * 1e6)
        return self.recorder.cut(start, end)

    def on_event(self, event: dict) -> None:
        """Write the event's waveform as SAC, one file per component; name them in the event."""
        try:
            cut = self.cut(event)
        except Exception:  # a snippet must never cost the event itself
            self.faults(logging.ERROR, "processing", "event snippet could not be cut", exc_info=True)
            return
        if cut is None:
            return
        missing = flat_components(cut[2])
        try:
            paths = self._write(cut, event, live=~missing)
        except OSError as exc:
            self.faults(logging.ERROR, "disk", "%s: cannot write event snippet (%s)", self.folder,
                        exc.strerror or exc)
            return
        if self.faults.failing("disk"):
            self.faults.recovered("disk", "%s: snippets written again", self.folder)
        t0_us, rate, _, n_filled = cut
        event["snippet"] = {"files": paths, "start_us": t0_us, "sampling_rate_hz": rate,
                            "samples_filled": n_filled}
        if missing.any():
            event["snippet"]["components_missing"] = [c for c, m in zip(self.components, missing,
                                                                        strict=False) if m]

    def _write(self, cut, event: dict, live) -> list[str]:
        """One SAC file per component where ``live`` (bool per component); their paths."""
        t0_us, rate, data, _ = cut
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(t0_us / 1e6))
        picks = {"P": event.get("p_time_us"), "S": event.get("s_time_us")}
        self.folder.mkdir(parents=True, exist_ok=True)
        # Milliseconds, then a counter: two events starting in the same second (a foreshock and
        # its main shock) must never overwrite each other's records.
        name = f"{self.station}.{stamp}.{(t0_us // 1000) % 1000:03d}"
        n = 1
        while any(self.folder.glob(f"{name}.HN?.SAC")):
            n += 1
            name = f"{self.station}.{stamp}.{(t0_us // 1000) % 1000:03d}-{n}"
        paths = []
        for comp, trace, keep in zip(self.components, data, live, strict=False):
            if not keep:
                continue
            path = self.folder / f"{name}.HN{comp}.SAC"
            write_sac(path, trace, rate, t0_us, station=self.station, channel=f"HN{comp}",
                      event=stamp, picks_us=picks)
            paths.append(str(path))
        return paths
