"""The C99 frame encoder for board firmware (firmware/): what the C code encodes, the node reads back.

The encoder is built with the host's gcc (strict C99, address and undefined-behaviour
sanitizers) together with firmware/test/frame_driver.c, which encodes the requests it reads on
stdin. Its output must equal the Python encoder's byte for byte and decode, with the node's own
decoders, to exactly the samples, sequence numbers, flags and time fixes asked for; one damaged
byte must make the node drop the frame or line. The encoder is cross-compiled for a Cortex-M0+
(its code size is printed) and the Arduino example is built against Debian's Arduino AVR core.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from edge_runtime.protocol import (
    TIME_FIX,
    FrameDecoder,
    encode_frame_v2,
    frame_size,
)
from edge_runtime.protocol_text import TextDecoder, encode_text_lines

ROOT = Path(__file__).resolve().parents[1]
FIRMWARE = ROOT / "firmware"
ENCODER = FIRMWARE / "seismictorch_frame.c"
C99 = ["-std=c99", "-Wall", "-Wextra", "-Werror", "-pedantic"]
T0_US = 1_767_225_600_000_000  # 2026-01-01
INT32 = (-(2**31), 2**31 - 1)
ARDUINO_AVR = Path("/usr/share/arduino/hardware/arduino/avr")


def need(tool: str, package: str) -> str:
    path = shutil.which(tool)
    if path is None:
        pytest.fail(f"{tool} not found: install {package} (make test installs it)", pytrace=False)
    return path


def build(cmd: list) -> None:
    done = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=300)
    if done.returncode:
        pytest.fail(f"{Path(str(cmd[0])).name} failed:\n{done.stderr[-4000:]}", pytrace=False)


@pytest.fixture(scope="module")
def driver(tmp_path_factory) -> Path:
    exe = tmp_path_factory.mktemp("firmware") / "frame_driver"
    build([need("gcc", "gcc"), *C99, "-Wconversion", "-Wshadow", "-g",
           "-fsanitize=address,undefined", "-fno-sanitize-recover=all",
           "-I", FIRMWARE, ENCODER, FIRMWARE / "test" / "frame_driver.c", "-o", exe])
    return exe


def run_driver(exe: Path, requests: list[str]) -> list[bytes]:
    """The encoder's output for each request (b"" where it refused)."""
    done = subprocess.run([exe], input="\n".join(requests).encode(), capture_output=True, timeout=120)
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    out, pos, data = [], 0, done.stdout
    while pos < len(data):
        n = int.from_bytes(data[pos:pos + 4], "little")
        out.append(data[pos + 4:pos + 4 + n])
        pos += 4 + n
    assert len(out) == len(requests)
    return out


def frame_request(case: dict, cap: int | None = None) -> str:
    counts = case["counts"]
    n_samples, n_channels = counts.shape
    cap = frame_size(2, n_samples, n_channels) if cap is None else cap
    fields = [cap, case["sequence"], case["timestamp_us"], case["rate_mhz"], case["board_id"],
              case["flags"], case["time_fix"], n_samples, n_channels]
    return "F " + " ".join(map(str, fields + counts.ravel().tolist()))


def text_request(row, checksum: bool, cap: int = 200) -> str:
    return f"T {cap} {int(checksum)} {len(row)} " + " ".join(map(str, row))


def random_case(rng: np.random.Generator) -> dict:
    n_channels = int(rng.integers(1, 9))
    n_samples = int(rng.choice([1, 10, int(rng.integers(1, 65)), int(rng.integers(1, 1025)), 1024],
                               p=[0.15, 0.35, 0.35, 0.1, 0.05]))
    counts = rng.integers(INT32[0], INT32[1], (n_samples, n_channels), endpoint=True, dtype=np.int64)
    counts.flat[rng.integers(0, counts.size, 2)] = INT32  # the word's ends, in every case
    pick = rng.integers(0, 4)
    return {
        "counts": counts.astype(np.int32),
        "sequence": int([0, 2**32 - 1, 2**31, rng.integers(0, 2**32)][pick]),
        "timestamp_us": int([T0_US + rng.integers(0, 10**13), -(2**63), 2**63 - 1,
                             rng.integers(-(2**63), 2**63 - 1)][rng.integers(0, 4)]),
        "rate_mhz": int([100, 100_000_000, 125_000, rng.integers(100, 10**8, endpoint=True)][pick]),
        "board_id": int(rng.integers(0, 2**32)),
        "flags": int(rng.integers(0, 8)),
        "time_fix": int(rng.integers(0, 3)),
    }


def python_frame(case: dict) -> bytes:
    return encode_frame_v2(case["sequence"], case["timestamp_us"], case["rate_mhz"] / 1000.0,
                           case["counts"], board_id=case["board_id"], flags=case["flags"],
                           time_fix=TIME_FIX[case["time_fix"]])


def assert_decoded_as(frame, case: dict) -> None:
    assert frame.version == 2
    assert frame.sequence == case["sequence"]
    assert frame.timestamp_us == case["timestamp_us"]
    assert round(frame.sampling_rate_hz * 1000) == case["rate_mhz"]
    assert frame.board_id == case["board_id"]
    assert frame.flags == case["flags"]
    assert frame.time_fix == TIME_FIX[case["time_fix"]]
    assert frame.samples.dtype == np.int32
    np.testing.assert_array_equal(frame.samples, case["counts"])


def decode(data: bytes, rng: np.random.Generator | None = None) -> tuple[list, FrameDecoder]:
    """All frames of ``data``, fed whole or in random chunks, the line then going quiet."""
    dec, frames, pos = FrameDecoder(), [], 0
    while pos < len(data):
        step = len(data) if rng is None else int(rng.integers(1, 400))
        frames += dec.feed(data[pos:pos + step])
        pos += step
    return frames + dec.flush(), dec


def test_v2_frames_decode_to_what_the_c_encoder_was_given(driver):
    rng = np.random.default_rng(24)
    cases = [random_case(rng) for _ in range(400)]
    encoded = run_driver(driver, [frame_request(c) for c in cases])
    for case, data in zip(cases, encoded, strict=True):
        assert data == python_frame(case)  # the wire format, byte for byte
        (frame,), _ = decode(data)
        assert_decoded_as(frame, case)
    frames, dec = decode(b"".join(encoded), rng)  # one stream, arriving in pieces
    assert len(frames) == len(cases)
    for frame, case in zip(frames, cases, strict=True):
        assert_decoded_as(frame, case)
    assert dec.stats.header_errors == dec.stats.crc_errors == dec.stats.bytes_discarded == 0


def test_one_damaged_byte_and_the_node_drops_the_frame(driver):
    rng = np.random.default_rng(2024)
    cases = []
    for i in range(150):
        case = random_case(rng)
        case["sequence"] = i  # before, damaged, after: told apart by sequence
        cases.append(case)
    encoded = run_driver(driver, [frame_request(c) for c in cases])
    for i in range(1, len(cases) - 1):
        bad = bytearray(encoded[i])
        at = int(rng.integers(0, len(bad)))
        bad[at] ^= int(rng.integers(1, 256))
        frames, dec = decode(encoded[i - 1] + bytes(bad) + encoded[i + 1])
        assert [f.sequence for f in frames] == [i - 1, i + 1], f"byte {at} of {len(bad)} damaged"
        assert dec.stats.bytes_discarded == len(bad)


def test_the_encoder_refuses_what_the_node_would_refuse(driver):
    good = random_case(np.random.default_rng(5)) | {"counts": np.ones((10, 3), np.int32),
                                                    "rate_mhz": 100_000, "flags": 0, "time_fix": 2}
    size = frame_size(2, 10, 3)
    refused = [
        good | {"counts": np.ones((10, 9), np.int32)},  # 9 channels
        good | {"counts": np.ones((1025, 1), np.int32)},  # 1025 samples
        good | {"rate_mhz": 99},
        good | {"rate_mhz": 100_000_001},
        good | {"flags": 8},
        good | {"time_fix": 3},
    ]
    requests = [frame_request(c) for c in refused]
    requests += [frame_request(good, cap=size - 1), frame_request(good, cap=0),
                 frame_request(good, cap=size), frame_request(good, cap=size + 7)]
    requests += [text_request([1] * 9, True), text_request([-(2**31)] * 8, True, cap=100),
                 text_request([1, 2, 3], False, cap=6), text_request([1, 2, 3], False, cap=7)]
    out = run_driver(driver, requests)  # the driver also fails if anything lands past the cap
    assert out[:8] == [b""] * 8
    assert out[8] == out[9] == python_frame(good)
    assert out[10] == b""  # 9 channels
    assert len(out[11]) == 99  # the longest line: 8 x -2147483648, its checksum, in 100 bytes
    assert out[12:] == [b"", b"1,2,3\n"]  # "1,2,3\n" needs 7 bytes with its NUL


def test_text_lines_decode_to_what_the_c_encoder_was_given(driver):
    rng = np.random.default_rng(55)
    for n_channels in range(1, 9):
        rows = rng.integers(INT32[0], INT32[1], (37, n_channels), endpoint=True, dtype=np.int64)
        rows[0], rows[1], rows[2] = INT32[0], INT32[1], 0
        rows[3] = rng.integers(-9, 10, n_channels)
        checksum = rng.random(len(rows)) < 0.7
        lines = run_driver(driver, [text_request(r, c) for r, c in zip(rows.tolist(), checksum, strict=True)])
        for row, line, c in zip(rows, lines, checksum, strict=True):
            assert line == encode_text_lines(row[None, :], checksum=bool(c))
        # lines with and without their checksum in one stream: the node's 'off' mode takes both
        # (its default, 'auto', would rightly drop a bare line once checksums were seen)
        dec = TextDecoder(n_channels, 125.0, checksum="off")
        frames = dec.feed(b"".join(lines)) + dec.flush()
        np.testing.assert_array_equal(np.concatenate([f.samples for f in frames]), rows)
        assert dec.stats.line_errors == 0 and dec.stats.lines == len(rows)


def test_one_damaged_byte_and_the_node_drops_the_checksummed_line(driver):
    rng = np.random.default_rng(7)
    printable = [b for b in range(0x20, 0x7F)] + [ord("\r"), ord("\t")]
    rows = rng.integers(-600_000, 600_000, (120, 3))
    lines = run_driver(driver, [text_request(r, True) for r in rows.tolist()])
    for i in range(1, len(rows) - 1):
        bad = bytearray(lines[i])
        at = int(rng.integers(0, bad.index(b"*")))  # a byte the checksum covers
        bad[at] = int(rng.choice([b for b in printable if b != bad[at]]))
        dec = TextDecoder(3, 125.0)
        frames = dec.feed(lines[i - 1] + bytes(bad) + lines[i + 1]) + dec.flush()
        np.testing.assert_array_equal(np.concatenate([f.samples for f in frames]), rows[[i - 1, i + 1]])
        assert dec.stats.line_errors == 1, bytes(bad)


def test_encoder_cross_compiles_for_cortex_m0plus(tmp_path, capsys):
    gcc = need("arm-none-eabi-gcc", "gcc-arm-none-eabi")
    obj = tmp_path / "seismictorch_frame.o"
    build([gcc, *C99, "-mcpu=cortex-m0plus", "-mthumb", "-Os", "-fstack-usage", "-c", ENCODER, "-o", obj])
    size = subprocess.run([need("arm-none-eabi-size", "gcc-arm-none-eabi"), obj],
                          capture_output=True, text=True, check=True).stdout
    text, data, bss = map(int, size.splitlines()[1].split()[:3])
    undefined = set(subprocess.run([need("arm-none-eabi-nm", "gcc-arm-none-eabi"), "-u", obj],
                                   capture_output=True, text=True, check=True).stdout.split()) - {"U"}
    stack = {m[0]: int(m[1]) for m in re.findall(r":(\w+)\t(\d+)\t", obj.with_suffix(".su").read_text())}
    with capsys.disabled():
        print(f"\nfirmware/seismictorch_frame.c on a Cortex-M0+ (-Os): {text} bytes of flash "
              f"(code and tables), {data + bss} bytes of static RAM, at most "
              f"{max(stack.values())} bytes of stack ({max(stack, key=stack.get)})")
    assert data == bss == 0, "the encoder keeps no state"
    assert undefined <= {"__aeabi_uidiv", "__aeabi_uidivmod"}, \
        f"calls beyond libgcc's division helpers: {sorted(undefined)}"
    assert text < 1024, "the encoder grew past 1 KiB on a Cortex-M0+"


def test_arduino_example_builds_against_the_arduino_avr_core(tmp_path):
    """The sketch and the encoder for an ATmega328P (16-bit int), linked with Debian's Arduino
    core and SPI library, in both output modes (binary v2 frames, text lines)."""
    gcc, gxx = need("avr-gcc", "arduino-core-avr"), need("avr-g++", "arduino-core-avr")
    if not (ARDUINO_AVR / "cores" / "arduino" / "Arduino.h").is_file():
        pytest.fail(f"{ARDUINO_AVR} not found: install arduino-core-avr (make test installs it)",
                    pytrace=False)
    spi = ARDUINO_AVR / "libraries" / "SPI" / "src"
    target = ["-mmcu=atmega328p", "-DF_CPU=16000000L", "-DARDUINO=10819", "-DARDUINO_AVR_UNO",
              "-DARDUINO_ARCH_AVR", "-Os", "-ffunction-sections", "-fdata-sections",
              "-I", ARDUINO_AVR / "cores" / "arduino", "-I", ARDUINO_AVR / "variants" / "standard",
              "-I", spi, "-I", FIRMWARE]
    objs = [tmp_path / "frame.o"]
    build([gcc, *C99, *target, "-c", ENCODER, "-o", objs[0]])
    sketch = FIRMWARE / "examples" / "adxl355_arduino" / "adxl355_arduino.ino"
    for text_lines in (1, 0):
        build([gxx, "-std=gnu++11", "-fno-exceptions", "-Wall", "-Wextra", "-Werror", *target,
               f"-DSEND_TEXT_LINES={text_lines}", "-x", "c++", "-include", "Arduino.h", "-c", sketch,
               "-o", tmp_path / "sketch.o"])
    objs.append(tmp_path / "sketch.o")
    # The core as the Arduino IDE builds it; Debian's gcc-avr 5.4 cannot compile its
    # WString.cpp (String(double)), which the sketch does not use: the link proves it.
    core_dir = ARDUINO_AVR / "cores" / "arduino"
    core = [*sorted(core_dir.glob("*.c")),
            *[p for p in sorted(core_dir.glob("*.cpp")) if p.name != "WString.cpp"], spi / "SPI.cpp"]
    for src in core:
        objs.append(tmp_path / f"core_{src.name}.o")
        flags = ["-std=gnu11"] if src.suffix == ".c" else \
            ["-std=gnu++11", "-fpermissive", "-fno-exceptions", "-fno-threadsafe-statics"]
        build([gcc if src.suffix == ".c" else gxx, *flags, "-w", *target, "-c", src, "-o", objs[-1]])
    elf = tmp_path / "adxl355_arduino.elf"
    build([gcc, "-mmcu=atmega328p", "-Os", "-Wl,--gc-sections", *objs, "-o", elf])
    assert elf.stat().st_size > 0
