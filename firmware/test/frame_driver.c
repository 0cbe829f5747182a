/*
 * Test driver of the frame encoder (tests/test_firmware.py): reads encode requests from
 * stdin, one per line, and writes each result to stdout as a 4-byte little-endian length
 * followed by the encoder's output (length 0: the encoder refused).
 *
 *   F cap sequence timestamp_us rate_mhz board_id flags time_fix n_samples n_channels counts...
 *   T cap with_checksum n_channels counts...
 *
 * cap is the out_size handed to the encoder. The bytes after it are filled with a guard
 * pattern that must survive: a write beyond out_size ends the driver with status 3.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "seismictorch_frame.h"

#define GUARD 64u
#define GUARD_BYTE 0xEEu

static uint8_t out[ST_FRAME_BYTES(ST_FRAME_MAX_SAMPLES, ST_FRAME_MAX_CHANNELS) + 64u + GUARD];
static int32_t counts[(ST_FRAME_MAX_SAMPLES + 1u) * (ST_FRAME_MAX_CHANNELS + 1u)];

static long long next_value(void)
{
    long long v;
    if (scanf("%lld", &v) != 1) {
        fprintf(stderr, "frame_driver: truncated request\n");
        exit(2);
    }
    return v;
}

static void read_counts(size_t n)
{
    size_t i;
    if (n > sizeof counts / sizeof counts[0]) {
        fprintf(stderr, "frame_driver: %lu counts do not fit\n", (unsigned long)n);
        exit(2);
    }
    for (i = 0; i < n; i++)
        counts[i] = (int32_t)next_value();
}

static size_t read_cap(void)
{
    long long cap = next_value();
    if (cap < 0 || (unsigned long long)cap > sizeof out - GUARD) {
        fprintf(stderr, "frame_driver: cap %lld outside 0..%lu\n", cap, (unsigned long)(sizeof out - GUARD));
        exit(2);
    }
    memset(out, GUARD_BYTE, sizeof out);
    return (size_t)cap;
}

static void emit(size_t cap, size_t n)
{
    uint8_t length[4];
    size_t i;
    for (i = cap; i < cap + GUARD; i++) {
        if (out[i] != GUARD_BYTE) {
            fprintf(stderr, "frame_driver: the encoder wrote at byte %lu beyond out_size %lu\n",
                    (unsigned long)i, (unsigned long)cap);
            exit(3);
        }
    }
    length[0] = (uint8_t)(n & 0xFFu);
    length[1] = (uint8_t)((n >> 8) & 0xFFu);
    length[2] = (uint8_t)((n >> 16) & 0xFFu);
    length[3] = (uint8_t)((n >> 24) & 0xFFu);
    fwrite(length, 1, 4, stdout);
    fwrite(out, 1, n, stdout);
}

static void frame_request(void)
{
    st_frame_header h;
    size_t cap = read_cap();
    uint16_t n_samples;
    uint8_t n_channels;
    h.sequence = (uint32_t)next_value();
    h.timestamp_us = (int64_t)next_value();
    h.rate_mhz = (uint32_t)next_value();
    h.board_id = (uint32_t)next_value();
    h.flags = (uint8_t)next_value();
    h.time_fix = (uint8_t)next_value();
    n_samples = (uint16_t)next_value();
    n_channels = (uint8_t)next_value();
    read_counts((size_t)n_samples * n_channels);
    emit(cap, st_frame_encode_v2(out, cap, &h, counts, n_samples, n_channels));
}

static void text_request(void)
{
    size_t cap = read_cap();
    int with_checksum = (int)next_value();
    uint8_t n_channels = (uint8_t)next_value();
    read_counts(n_channels);
    emit(cap, st_frame_encode_text_line((char *)out, cap, counts, n_channels, with_checksum));
}

int main(void)
{
    char kind[2];
    while (scanf("%1s", kind) == 1) {
        if (kind[0] == 'F')
            frame_request();
        else if (kind[0] == 'T')
            text_request();
        else {
            fprintf(stderr, "frame_driver: unknown request '%c'\n", kind[0]);
            return 2;
        }
    }
    return fflush(stdout) == 0 ? 0 : 1;
}
