/*
 * SeismicTorch serial frame encoder for acquisition-board firmware (C99).
 *
 * Produces the bytes the SeismicTorch node decodes (edge_runtime/protocol.py, specified in
 * docs/serial-protocol.md):
 *   - binary frames, protocol version 2 (32-byte header with its own CRC-16, int32 samples,
 *     CRC-32 over everything after the sync word);
 *   - text lines "c0,c1,c2*HH\n" with the NMEA XOR checksum, for boards that cannot send binary.
 *
 * No dependency beyond <stddef.h> and <stdint.h>, no library call, no malloc, no static
 * state: every function writes into a buffer the caller owns and is reentrant. Bytes are
 * assembled with shifts, so the result is the same on little- and big-endian CPUs and with a
 * 16-bit int (AVR).
 *
 * Units:
 *   counts        raw ADC counts of the sensor (int32, e.g. the ADXL355's sign-extended 20-bit
 *                 words); the node converts them to m/s^2 with its configured sensor model.
 *   rate_mhz      sampling rate in millihertz (100 Hz -> 100000, 125 Hz -> 125000).
 *   timestamp_us  UTC time of the frame's first sample, microseconds since 1970-01-01.
 *                 The node refuses frames stamped before 2000 or after 2100.
 *
 * Typical use, 10 samples x 3 channels (E, N, Z) per frame:
 *
 *     static int32_t counts[10 * 3];      // interleaved: s0E s0N s0Z s1E ...
 *     static uint8_t frame[ST_FRAME_BYTES(10, 3)];
 *     st_frame_header h = {0};
 *     h.sequence = seq++;                 // +1 per frame; start at 0 after every reset
 *     h.timestamp_us = t0_us;
 *     h.rate_mhz = 125000u;
 *     h.board_id = my_board_id;
 *     h.flags = 0;                        // ST_FRAME_FLAG_* bits
 *     h.time_fix = ST_FRAME_TIME_FIX_FREE;
 *     size_t n = st_frame_encode_v2(frame, sizeof frame, &h, counts, 10, 3);
 *     if (n) uart_write(frame, n);
 */
#ifndef SEISMICTORCH_FRAME_H
#define SEISMICTORCH_FRAME_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Limits of the wire format (the node refuses frames outside them). */
#define ST_FRAME_VERSION 2u
#define ST_FRAME_HEADER_BYTES 32u /* v2 header, sync word and header CRC included */
#define ST_FRAME_MAX_CHANNELS 8u
#define ST_FRAME_MAX_SAMPLES 1024u /* samples per channel in one frame */
#define ST_FRAME_MIN_RATE_MHZ 100u /* 0.1 Hz */
#define ST_FRAME_MAX_RATE_MHZ 100000000u /* 100 kHz */

/* Bytes of a v2 frame of n_samples x n_channels: 32 + 4 * n_samples * n_channels + 4. */
#define ST_FRAME_BYTES(n_samples, n_channels) \
    ((size_t)ST_FRAME_HEADER_BYTES + (size_t)4u * (size_t)(n_samples) * (size_t)(n_channels) + (size_t)4u)

/* Status bits of the flags field; the node counts each set bit per frame. */
#define ST_FRAME_FLAG_CLIPPING 0x01u /* a sample of this frame reached the sensor's full scale */
#define ST_FRAME_FLAG_SELFTEST_FAIL 0x02u /* the sensor failed its self-test or identity check */
#define ST_FRAME_FLAG_OVERRUN 0x04u /* samples were lost on the board before this frame */
#define ST_FRAME_FLAGS_KNOWN 0x07u

/* State of the board's clock when it stamped the frame (carried into the node's events). */
#define ST_FRAME_TIME_FIX_FREE 0u /* free-running oscillator, set once */
#define ST_FRAME_TIME_FIX_NTP 1u
#define ST_FRAME_TIME_FIX_GPS 2u /* GPS time, PPS-disciplined */

/*
 * Buffer size (terminating NUL included) that always holds one text line of n_channels
 * values with its checksum: 11 characters per value ("-2147483648"), the commas, "*HH\n" and
 * NUL. 40 bytes for 3 channels; at most 100, below the node's 128-byte line limit.
 */
#define ST_FRAME_TEXT_LINE_BYTES(n_channels) ((size_t)12u * (size_t)(n_channels) + (size_t)4u)

/* Header fields of one v2 frame. */
typedef struct st_frame_header {
    uint32_t sequence;    /* frame counter, +1 per frame, wraps at 2^32; a restart begins at 0 again */
    int64_t timestamp_us; /* UTC time of the first sample, microseconds since 1970-01-01 */
    uint32_t rate_mhz;    /* sampling rate, millihertz, ST_FRAME_MIN_RATE_MHZ..ST_FRAME_MAX_RATE_MHZ */
    uint32_t board_id;    /* the board's identity (serial number, hash of the MCU's unique id) */
    uint8_t flags;        /* OR of ST_FRAME_FLAG_* */
    uint8_t time_fix;     /* ST_FRAME_TIME_FIX_FREE, _NTP or _GPS */
} st_frame_header;

/*
 * Encode one v2 frame into out[0 .. out_size).
 *
 * counts holds n_samples * n_channels int32 ADC counts interleaved by sample (s0c0 s0c1 s0c2
 * s1c0 ...), channels in the order the node's model names them (E, N, Z).
 *
 * Returns the frame's length in bytes, ST_FRAME_BYTES(n_samples, n_channels), or 0 (nothing
 * sendable; out may hold partial bytes) when an argument is NULL or out of the format's
 * bounds: n_channels outside 1..8, n_samples outside 1..1024, rate_mhz outside
 * 100..100000000, an unknown flag bit, time_fix above 2, or out_size too small.
 * Never writes at or beyond out + out_size.
 */
size_t st_frame_encode_v2(uint8_t *out, size_t out_size, const st_frame_header *header,
                          const int32_t *counts, uint16_t n_samples, uint8_t n_channels);

/*
 * Encode one text line: the n_channels counts in decimal, separated by commas, then
 * "*HH" (HH: the XOR of the bytes before '*', two upper-case hex digits) when with_checksum
 * is non-zero, then '\n'. A NUL follows the '\n' so the line can go to a print function.
 *
 * Returns the line's length without the NUL (the bytes to send), or 0 (out may hold partial
 * bytes) when counts or out is NULL, n_channels is outside 1..8, or out_size is too small for
 * the line and its NUL (ST_FRAME_TEXT_LINE_BYTES(n_channels) is always enough). Never writes
 * at or beyond out + out_size.
 */
size_t st_frame_encode_text_line(char *out, size_t out_size, const int32_t *counts,
                                 uint8_t n_channels, int with_checksum);

/*
 * CRC-16/CCITT-FALSE (poly 0x1021, not reflected) of data[0 .. n), continuing from crc;
 * start with 0xFFFF. The header CRC of a frame.
 */
uint16_t st_frame_crc16(const uint8_t *data, size_t n, uint16_t crc);

/*
 * CRC-32 (IEEE 802.3, the value zlib.crc32 returns) of data[0 .. n), continuing from crc;
 * start with 0. The frame CRC.
 */
uint32_t st_frame_crc32(const uint8_t *data, size_t n, uint32_t crc);

#ifdef __cplusplus
}
#endif

#endif /* SEISMICTORCH_FRAME_H */
