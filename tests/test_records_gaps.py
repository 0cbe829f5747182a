"""A gap longer than ``max_gap_s`` in one channel splits the record; nothing is interpolated
over it (real miniSEED and SAC files written by ObsPy)."""

from __future__ import annotations

import numpy as np
import pytest
from fixtures_records import trace, write_sac
from obspy import Stream, UTCDateTime

from host_training.recordings.reader import read_records
from tools.replay.score import truth_of

T0 = UTCDateTime(2026, 5, 1, 12)
FS = 100.0


def _channels(rng, seconds: float = 120.0) -> dict:
    n = int(seconds * FS)
    return {c: (rng.standard_normal(n) * 1e-3 + k).astype(np.float32) for k, c in enumerate("ENZ")}


def test_long_gap_in_one_channel_splits_the_record_and_invents_nothing(tmp_path):
    """E is missing from 40 to 70 s (30 s, beyond the 10 s merged), N from 90 to 92 s (merged).

    Three records: ENZ before the gap, NZ during it (E missing, as any missing
    component), ENZ after it; the samples are the file's, the short gap alone interpolated.
    """
    data = _channels(np.random.default_rng(3))
    e, n, z = data["E"], data["N"], data["Z"]
    stream = Stream([trace(e[:4000], "GAP", "HNE", T0), trace(e[7000:], "GAP", "HNE", T0 + 70.0),
                     trace(n[:9000], "GAP", "HNN", T0), trace(n[9200:], "GAP", "HNN", T0 + 92.0),
                     trace(z, "GAP", "HNZ", T0)])
    stream.write(str(tmp_path / "GAP.mseed"), format="MSEED")
    records, skipped = read_records([tmp_path], units="m/s2", nan_gaps=True)
    assert skipped == []
    assert [r.starttime - T0 for r in records] == [0.0, 40.0, 70.0]
    assert [r.n_samples for r in records] == [4000, 3000, 5000]
    assert [r.present for r in records] == [(True, True, True), (False, True, True), (True, True, True)]
    before, during, after = records
    np.testing.assert_array_equal(before.data, np.vstack([e[:4000], n[:4000], z[:4000]]))
    np.testing.assert_array_equal(during.data[1:], np.vstack([n[4000:7000], z[4000:7000]]))
    assert not during.data[0].any() and during.channels[0] is None
    np.testing.assert_array_equal(after.data[[0, 2]], np.vstack([e[7000:], z[7000:]]))
    np.testing.assert_array_equal(after.data[1, :2000], n[7000:9000])
    for k, r in enumerate(records):
        note, = [a for a in r.actions if a.startswith("split at gap")]
        assert "30.0 s in XX.GAP..HNE from 12:00:39.99" in note and f"part {k + 1} of 3" in note, note
    assert [a for a in after.actions if "interpolation" in a] == [
        "HNN: merged 1 gap(s) of 2.000 s (linear interpolation)"]
    assert not any("interpolation" in a for r in (before, during) for a in r.actions)


@pytest.mark.parametrize("p_after_s, scored", [(90.0, ["noise", "noise", "earthquake"]),
                                                 (20.0, ["earthquake", "unknown", "unknown"])])
def test_split_parts_keep_the_event_picks_and_score_by_where_the_p_is(tmp_path, p_after_s, scored):
    """SAC files with the P in their headers: the parts before it score as noise, the part
    holding it as the earthquake, later parts (its coda) as unknown."""
    data = _channels(np.random.default_rng(4))
    p_time = T0 + p_after_s
    for name, tr in (("E1", trace(data["E"][:4000], "PIK", "HNE", T0)),
                     ("E2", trace(data["E"][7000:], "PIK", "HNE", T0 + 70.0)),
                     ("N", trace(data["N"], "PIK", "HNN", T0)), ("Z", trace(data["Z"], "PIK", "HNZ", T0))):
        write_sac(tr, tmp_path / f"XX.PIK.{name}.SAC", a=float(p_time - tr.stats.starttime), ka="P",
                  idep="iacc")
    records, skipped = read_records([tmp_path], units="m/s2")
    assert skipped == [] and len(records) == 3
    assert [r.part for r in records] == [(1, 3), (2, 3), (3, 3)]
    assert all(abs(r.picks["P"].time - p_time) < 1e-3 for r in records)
    truths = [truth_of(r) for r in records]
    assert [("earthquake" if t.is_earthquake else t.kind or "unknown") for t in truths] == scored
    quake, = [t for t in truths if t.is_earthquake]
    assert abs(quake.p_s - p_time.timestamp) < 1e-3


@pytest.mark.parametrize("case", ["late components", "leading NaN"])
def test_sac_pick_keeps_its_time_when_its_trace_start_moves(tmp_path, case):
    """SAC picks count from the reference time (start - b); a trace trimmed to the common
    span, or cut where NaN samples begin it, keeps its picks' absolute times (they moved
    with the start by as much as it was trimmed: 5 s, 3 s)."""
    rng = np.random.default_rng(5)
    for c in "ENZ":
        data = (rng.standard_normal(3000) * 1e-3).astype(np.float32)
        start = T0
        if case == "late components" and c != "Z":
            data, start = data[500:], T0 + 5.0  # Z, which holds the pick, is trimmed by 5 s
        if case == "leading NaN":
            data[:300] = np.nan
        write_sac(trace(data, "REF", f"HN{c}", start), tmp_path / f"XX.REF.{c}.SAC",
                  idep="iacc", **({"a": float(T0 + 20.0 - start), "ka": "P"} if c == "Z" else {}))
    (record,), skipped = read_records([tmp_path], units="m/s2", nan_gaps=True)
    assert skipped == []
    assert record.starttime - T0 == {"late components": 5.0, "leading NaN": 3.0}[case]
    assert abs(record.picks["P"].time - (T0 + 20.0)) < 1e-3, record.picks
