/*
 * SeismicTorch serial frame encoder (C99): see seismictorch_frame.h for the interface and
 * docs/serial-protocol.md for the wire format. All integers go out little-endian.
 */
#include "seismictorch_frame.h"

/* Both CRCs run a nibble at a time: 16-entry tables (96 bytes in all) instead of 256-entry
 * ones (1.5 KiB), about half the speed, ample for a frame every 0.1 s. */
static const uint16_t crc16_nibble[16] = {
    0x0000u, 0x1021u, 0x2042u, 0x3063u, 0x4084u, 0x50A5u, 0x60C6u, 0x70E7u,
    0x8108u, 0x9129u, 0xA14Au, 0xB16Bu, 0xC18Cu, 0xD1ADu, 0xE1CEu, 0xF1EFu};

static const uint32_t crc32_nibble[16] = {
    0x00000000u, 0x1DB71064u, 0x3B6E20C8u, 0x26D930ACu, 0x76DC4190u, 0x6B6B51F4u,
    0x4DB26158u, 0x5005713Cu, 0xEDB88320u, 0xF00F9344u, 0xD6D6A3E8u, 0xCB61B38Cu,
    0x9B64C2B0u, 0x86D3D2D4u, 0xA00AE278u, 0xBDBDF21Cu};

uint16_t st_frame_crc16(const uint8_t *data, size_t n, uint16_t crc)
{
    size_t i;
    for (i = 0; i < n; i++) {
        unsigned b = data[i];
        crc = (uint16_t)((uint16_t)(crc << 4) ^ crc16_nibble[((unsigned)(crc >> 12) ^ (b >> 4)) & 15u]);
        crc = (uint16_t)((uint16_t)(crc << 4) ^ crc16_nibble[((unsigned)(crc >> 12) ^ b) & 15u]);
    }
    return crc;
}

uint32_t st_frame_crc32(const uint8_t *data, size_t n, uint32_t crc)
{
    size_t i;
    crc = ~crc;
    for (i = 0; i < n; i++) {
        crc ^= data[i];
        crc = (crc >> 4) ^ crc32_nibble[crc & 15u];
        crc = (crc >> 4) ^ crc32_nibble[crc & 15u];
    }
    return ~crc;
}

static uint8_t *put_u16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v & 0xFFu);
    p[1] = (uint8_t)(v >> 8);
    return p + 2;
}

static uint8_t *put_u32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v & 0xFFu);
    p[1] = (uint8_t)((v >> 8) & 0xFFu);
    p[2] = (uint8_t)((v >> 16) & 0xFFu);
    p[3] = (uint8_t)(v >> 24);
    return p + 4;
}

size_t st_frame_encode_v2(uint8_t *out, size_t out_size, const st_frame_header *header,
                          const int32_t *counts, uint16_t n_samples, uint8_t n_channels)
{
    size_t size, n_values, i;
    uint64_t timestamp;
    uint8_t *p;

    if (out == NULL || header == NULL || counts == NULL)
        return 0;
    if (n_channels < 1u || n_channels > ST_FRAME_MAX_CHANNELS)
        return 0;
    if (n_samples < 1u || n_samples > ST_FRAME_MAX_SAMPLES)
        return 0;
    if (header->rate_mhz < ST_FRAME_MIN_RATE_MHZ || header->rate_mhz > ST_FRAME_MAX_RATE_MHZ)
        return 0;
    if ((header->flags & (uint8_t)~ST_FRAME_FLAGS_KNOWN) != 0u || header->time_fix > ST_FRAME_TIME_FIX_GPS)
        return 0;
    size = ST_FRAME_BYTES(n_samples, n_channels);
    if (out_size < size)
        return 0;

    p = out;
    *p++ = 0xA5u; /* sync */
    *p++ = 0x5Au;
    *p++ = (uint8_t)ST_FRAME_VERSION;
    *p++ = n_channels;
    p = put_u16(p, n_samples);
    p = put_u32(p, header->sequence);
    timestamp = (uint64_t)header->timestamp_us; /* two's complement, as the int64 field */
    p = put_u32(p, (uint32_t)(timestamp & 0xFFFFFFFFu));
    p = put_u32(p, (uint32_t)(timestamp >> 32));
    p = put_u32(p, header->rate_mhz);
    p = put_u32(p, header->board_id);
    *p++ = header->flags;
    *p++ = header->time_fix;
    p = put_u16(p, 0u); /* reserved */
    p = put_u16(p, st_frame_crc16(out + 2, ST_FRAME_HEADER_BYTES - 4u, 0xFFFFu));

    n_values = (size_t)n_samples * n_channels;
    for (i = 0; i < n_values; i++)
        p = put_u32(p, (uint32_t)counts[i]); /* two's complement, as the int32 field */
    put_u32(p, st_frame_crc32(out + 2, size - 6u, 0u));
    return size;
}

/* Writer of a text line into the caller's buffer: stores what fits, counts all, and keeps the
 * XOR checksum of what it wrote. */
typedef struct text_cursor {
    char *out;
    size_t size;
    size_t n;
    unsigned check;
} text_cursor;

static void put_char(text_cursor *c, char ch)
{
    if (c->n < c->size)
        c->out[c->n] = ch;
    c->n++;
    c->check ^= (unsigned char)ch;
}

static void put_decimal(text_cursor *c, int32_t v)
{
    char digits[10];
    unsigned n = 0;
    /* Magnitude in unsigned arithmetic: -INT32_MIN does not fit an int32. */
    uint32_t m = v < 0 ? 0u - (uint32_t)v : (uint32_t)v;

    if (v < 0)
        put_char(c, '-');
    do {
        digits[n++] = (char)('0' + (int)(m % 10u));
        m /= 10u;
    } while (m != 0u);
    while (n > 0u)
        put_char(c, digits[--n]);
}

size_t st_frame_encode_text_line(char *out, size_t out_size, const int32_t *counts,
                                 uint8_t n_channels, int with_checksum)
{
    static const char hex[] = "0123456789ABCDEF";
    text_cursor c;
    size_t i;

    if (out == NULL || counts == NULL || n_channels < 1u || n_channels > ST_FRAME_MAX_CHANNELS)
        return 0;
    c.out = out;
    c.size = out_size;
    c.n = 0;
    c.check = 0;
    for (i = 0; i < n_channels; i++) {
        if (i > 0u)
            put_char(&c, ',');
        put_decimal(&c, counts[i]);
    }
    if (with_checksum) {
        unsigned check = c.check;
        put_char(&c, '*');
        put_char(&c, hex[(check >> 4) & 15u]);
        put_char(&c, hex[check & 15u]);
    }
    put_char(&c, '\n');
    if (c.n + 1u > out_size)
        return 0;
    out[c.n] = '\0';
    return c.n;
}
