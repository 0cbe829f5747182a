"""Text mode (issue 23): a checksum mode, and no cut or overlong line taken as a sample."""

import numpy as np
import pytest

from edge_runtime.protocol_text import TextDecoder, encode_text_lines, nmea_checksum


def rows_of(decoder: TextDecoder, *reads: bytes) -> list[list[int]]:
    frames = [f for data in reads for f in decoder.feed(data)] + decoder.flush()
    return [row for f in frames for row in f.samples.tolist()]


def accounted(dec: TextDecoder) -> bool:
    s = dec.stats
    return s.bytes_in == s.bytes_accepted + s.bytes_discarded + len(dec._buf)


def test_overlong_line_across_two_reads_is_dropped_whole():
    dec = TextDecoder(3, 100.0)
    head = b"1234," * 26  # 130 bytes and no newline yet: dropped at once
    assert rows_of(dec, head, b"11,22,33\n", b"4,5,6\n") == [[4, 5, 6]]
    assert dec.stats.line_errors == 1 and accounted(dec)


def test_overlong_line_across_many_reads_is_dropped_whole():
    dec = TextDecoder(3, 100.0)
    reads = [b"9" * 100] * 5 + [b"9,11,22,33\n7,8,9\n"]
    assert rows_of(dec, *reads) == [[7, 8, 9]] and accounted(dec)


def test_line_cut_before_its_checksum_is_refused_once_checksums_were_seen():
    good = b"1236,-560,26110*%02X\n" % nmea_checksum(b"1236,-560,26110")
    dec = TextDecoder(3, 100.0)  # "auto", the default
    assert rows_of(dec, good, b"1234,-567,26\n") == [[1236, -560, 26110]]
    assert "no *HH checksum" in dec.stats.last_error
    # The next line may be the cut line's tail (noise can turn a byte into a newline).
    assert rows_of(dec, good, good) == [[1236, -560, 26110]] and accounted(dec)
    assert "may be that line's tail" in dec.stats.last_error


def test_tail_of_a_line_split_by_noise_is_not_a_sample():
    # "11" XORs to 0: the tail "2,-828,-879" carries the whole line's checksum.
    line = b"112,-828,-879*%02X\n" % nmea_checksum(b"112,-828,-879")
    good = b"1,2,3*%02X\n" % nmea_checksum(b"1,2,3")
    assert rows_of(TextDecoder(3, 100.0), good, line[:2] + b"\n" + line[2:], good) == [[1, 2, 3]] * 2


def test_checksum_modes():
    plain = b"1,2,3\n"
    summed = encode_text_lines(np.array([[4, 5, 6]]), checksum=True)
    assert rows_of(TextDecoder(3, 100.0), plain, summed, plain) == [[1, 2, 3], [4, 5, 6]]
    assert rows_of(TextDecoder(3, 100.0, checksum="off"), plain, summed, plain) == \
        [[1, 2, 3], [4, 5, 6], [1, 2, 3]]
    assert rows_of(TextDecoder(3, 100.0, checksum="required"), plain, summed, summed) == [[4, 5, 6]]
    bad = b"4,5,6*%02X\n" % (nmea_checksum(b"4,5,6") ^ 1)  # a wrong checksum: refused in every mode
    for mode in ("off", "auto", "required"):
        assert rows_of(TextDecoder(3, 100.0, checksum=mode), bad) == []
    with pytest.raises(ValueError, match="off, auto, required"):
        TextDecoder(3, 100.0, checksum="on")


def mutate(rng, line: bytes) -> bytes:
    """One fault of a serial line applied to ``line`` (newline included)."""
    kind = int(rng.integers(7))
    body = bytearray(line[:-1])
    j = int(rng.integers(len(body)))
    if kind == 0:  # a bit flipped
        body[j] ^= 1 << int(rng.integers(8))
    elif kind == 1:  # a byte replaced
        body[j] = int(rng.integers(256))
    elif kind == 2:  # a byte lost
        del body[j]
    elif kind == 3:  # a byte inserted
        body.insert(j, int(rng.integers(256)))
    elif kind == 4:  # the line cut short (the board reset mid-line)
        del body[j:]
    elif kind == 5:  # a newline in the middle
        body.insert(j, 10)
    else:  # noise makes it overlong
        body[j:j] = bytes(rng.integers(48, 58, int(rng.integers(120, 200)), dtype=np.uint8))
    return bytes(body) + b"\n"


def test_fuzz_100000_mutated_checksummed_lines_no_wrong_row_accepted():
    rng = np.random.default_rng(23)
    n = 100_000
    values = rng.integers(-2**31, 2**31, (n, 3)).astype(np.int64)
    values[: n // 2] //= rng.integers(1, 10**8, (n // 2, 1))  # short numbers too
    lines = encode_text_lines(values, checksum=True).splitlines(keepends=True)
    stream = b"".join(line + mutate(rng, line) for line in lines)  # each line, then a damaged copy
    dec = TextDecoder(3, 100.0, samples_per_frame=1000)
    cuts = np.cumsum(rng.integers(1, 300, len(stream) // 100))
    reads = np.split(np.frombuffer(stream, np.uint8), cuts[cuts < len(stream)])
    got = np.array(rows_of(dec, *(r.tobytes() for r in reads)), dtype=np.int64)
    sent = {tuple(v) for v in values.tolist()}
    wrong = [row for row in got.tolist() if tuple(row) not in sent]
    assert wrong == [], f"{len(wrong)} wrong rows accepted of {n} damaged lines, e.g. {wrong[:3]}"
    # The intact lines go through, but for those after a line cut from its checksum (it
    # may be that line's tail) and those that lose their newline to a fault.
    assert len(got) >= 0.6 * n, len(got)
    assert accounted(dec)
