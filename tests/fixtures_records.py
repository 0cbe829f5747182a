"""Small real-shaped recordings written with ObsPy, for the record reader and replay-test.

Each builder writes real SAC/miniSEED/StationXML files the way observatories and
strong-motion networks ship them; none is a mock of ObsPy.
"""

from __future__ import annotations

import numpy as np
from obspy import Stream, Trace, UTCDateTime
from obspy.io.sac import SACTrace

COUNTS_PER_MPS2 = 1.0e5  # the fixture accelerograph's sensitivity


def quake(rng, n: int, fs: float, p_s: float, pga: float = 0.5, sp_s: float = 2.0) -> np.ndarray:
    """(3, n) m/s^2: weak noise, a P onset (vertical first) and a stronger S, decaying."""
    t = np.arange(n) / fs
    x = rng.normal(0, 1e-4, (3, n))
    for onset, amp, comps in ((p_s, 0.3 * pga, (2,)), (p_s + sp_s, pga, (0, 1))):
        env = np.where(t >= onset, np.exp(-(t - onset) / 2.0), 0.0)
        for c in range(3):
            scale = amp if c in comps else 0.3 * amp
            x[c] += scale * env * np.sin(2 * np.pi * 4.0 * t + c)
    return x


def trace(data, station, channel, start, fs=100.0, network="XX", location="") -> Trace:
    tr = Trace(np.asarray(data, dtype=np.float32))
    tr.stats.update(dict(network=network, station=station, location=location, channel=channel,
                         sampling_rate=fs, starttime=start))
    return tr


def write_sac(tr: Trace, path, **headers) -> None:
    sac = SACTrace.from_obspy_trace(tr)
    for key, value in headers.items():
        setattr(sac, key, value)
    sac.write(str(path))


def inventory_for(station: str, channels, fs: float, lat=38.0, lon=-122.0, network="XX"):
    """StationXML with an acceleration -> counts response (ObsPy objects)."""
    from obspy.core.inventory import Channel, Inventory, Network, Site, Station
    from obspy.core.inventory.response import Response

    chans = []
    for cha in channels:
        resp = Response.from_paz(zeros=[], poles=[], stage_gain=COUNTS_PER_MPS2, input_units="M/S**2",
                                 output_units="COUNTS", normalization_frequency=1.0)
        dip = -90.0 if cha.endswith("Z") else 0.0
        az = {"E": 90.0, "N": 0.0}.get(cha[-1], 0.0)
        chans.append(Channel(cha, "", lat, lon, 10.0, 0.0, azimuth=az, dip=dip, sample_rate=fs,
                             response=resp))
    sta = Station(station, lat, lon, 10.0, channels=chans, site=Site(name="fixture"),
                  creation_date=UTCDateTime(2000, 1, 1))
    return Inventory(networks=[Network(network, stations=[sta])], source="fixture")


def build_fixture_set(folder, rng, fs: float = 100.0, seconds: float = 8.0, p_s: float = 3.0,
                      pga: float = 0.5, corrupt: bool = True) -> dict:
    """One of each case under ``folder``; returns what each record should read as.

    one_component: HNZ only, SAC idep IACC (nm/s^2), P in ``a`` without a label.
    two_component: HN1/HN2 with cmpaz, gal (units from the catalog), P/S in the catalog.
    offset: HNE/HNN/HNZ in m/s^2 (idep IACC), HNN starts 4 ms late.
    gap: miniSEED in counts with a StationXML response (ObsPy Inventory); HNZ has a 0.3 s gap.
    old: 1995 record, lower-case ``.sac`` names, picks labelled in kt1 (P) / kt2 (S).
    corrupt: a file of random bytes named ``.SAC``.
    """
    folder.mkdir(parents=True, exist_ok=True)
    n = int(seconds * fs)
    t0 = UTCDateTime(2026, 3, 1, 12)
    truth = {}

    data = quake(rng, n, fs, p_s, pga)
    write_sac(trace(data[2] * 1e9, "ONE", "HNZ", t0, fs), folder / "XX.ONE..HNZ.SAC",
              idep="iacc", a=p_s)
    truth["ONE"] = dict(present=(False, False, True), p=t0 + p_s)

    t1 = t0 + 3600
    data = quake(rng, n, fs, p_s, pga)
    write_sac(trace(data[1] * 100, "TWO", "HN1", t1, fs), folder / "XX.TWO..HN1.SAC", cmpaz=0.0,
              cmpinc=90.0)
    write_sac(trace(data[0] * 100, "TWO", "HN2", t1, fs), folder / "XX.TWO..HN2.SAC", cmpaz=90.0,
              cmpinc=90.0)
    truth["TWO"] = dict(present=(True, True, False), p=t1 + p_s, s=t1 + p_s + 2.0)

    t2 = t0 + 7200
    data = quake(rng, n, fs, p_s, pga)
    for i, cha in enumerate(("HNE", "HNN", "HNZ")):
        start = t2 + (0.004 if cha == "HNN" else 0.0)
        write_sac(trace(data[i] * 1e9, "OFS", cha, start, fs), folder / f"XX.OFS..{cha}.SAC",
                  idep="iacc", a=p_s, ka="P")
    truth["OFS"] = dict(present=(True, True, True), p=t2 + p_s, aligned="HNN")

    t3 = t0 + 10800
    data = quake(rng, n, fs, p_s, pga)
    st = Stream()
    cut = int(5.0 * fs)
    for i, cha in enumerate(("HNE", "HNN", "HNZ")):
        counts = np.round(data[i] * COUNTS_PER_MPS2).astype(np.int32)
        if cha == "HNZ":  # a 0.3 s gap
            st += trace(counts[:cut], "CNT", cha, t3, fs).copy()
            st += trace(counts[cut + 30:], "CNT", cha, t3 + (cut + 30) / fs, fs)
        else:
            st += trace(counts, "CNT", cha, t3, fs)
    for tr in st:
        tr.data = tr.data.astype(np.int32)
    st.write(str(folder / "XX.CNT.mseed"), format="MSEED")
    inventory_for("CNT", ("HNE", "HNN", "HNZ"), fs).write(str(folder / "XX.CNT.xml"),
                                                          format="STATIONXML")
    truth["CNT"] = dict(present=(True, True, True), gap=True, peak=float(np.abs(data).max()))

    t4 = UTCDateTime(1995, 1, 17, 5, 46)
    data = quake(rng, n, fs, p_s, pga)
    for i, cha in enumerate(("hne", "hnn", "hnz")):
        write_sac(trace(data[i] * 1e9, "OLD", cha.upper(), t4, fs), folder / f"xx.old..{cha}.sac",
                  idep="iacc", t1=p_s, kt1="P", t2=p_s + 2.0, kt2="S", t0=1.0, kt0="X")
    truth["OLD"] = dict(present=(True, True, True), p=t4 + p_s, s=t4 + p_s + 2.0)

    if corrupt:
        (folder / "XX.BAD..HNZ.SAC").write_bytes(rng.integers(0, 256, 700, dtype=np.uint8).tobytes())
    catalog = folder / "catalog.csv"
    catalog.write_text("files,kind,p_time,s_time,units,notes\n"
                       f"XX.TWO..HN?.SAC,earthquake,{t1 + p_s},{t1 + p_s + 2.0},gal (cm/s^2),two\n")
    return truth


if __name__ == "__main__":
    # Regenerate the fixtures `make replay` ships: python tests/fixtures_records.py tools/fixtures/records
    import sys
    from pathlib import Path

    build_fixture_set(Path(sys.argv[1]), np.random.default_rng(2026), seconds=20.0, p_s=8.0,
                      pga=0.8, corrupt=False)
