/*
 * ADXL355 on SPI -> SeismicTorch node over USB, Raspberry Pi Pico SDK (docs/firmware.md).
 *
 * Reads the ADXL355's 20-bit X/Y/Z data registers at 125 Hz and sends them as protocol-v2
 * binary frames of 10 samples over the USB serial port (or, built with -DSEND_TEXT_LINES=1,
 * one checksummed text line per sample). Mount the sensor with X east, Y north and Z up:
 * channels go out as E, N, Z. The board id is a hash of the flash chip's unique id.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "hardware/gpio.h"
#include "hardware/spi.h"
#include "pico/stdlib.h"
#include "pico/unique_id.h"

#include "seismictorch_frame.h"

/* ------------------------------------------------------------------ settings */
#define ADXL355_SPI spi0
#define PIN_MISO 16 /* GP16 SPI0 RX  <- ADXL355 MISO */
#define PIN_CS 17   /* GP17          -> ADXL355 CS (driven as a GPIO) */
#define PIN_SCK 18  /* GP18 SPI0 SCK -> ADXL355 SCLK */
#define PIN_MOSI 19 /* GP19 SPI0 TX  -> ADXL355 MOSI */
#define SPI_CLOCK_HZ 5000000u /* the ADXL355 takes up to 10 MHz, SPI mode 0 */
/* UTC of the first sample, microseconds since 1970: the Pico has no clock of its own, so
 * frames say time_fix "free" and event times are only as good as this value. */
#define START_UTC_US 1767225600000000LL /* 2026-01-01T00:00:00Z */
#ifndef SEND_TEXT_LINES
#define SEND_TEXT_LINES 0 /* 1: text lines (the node stamps the time), 0: binary v2 frames */
#endif

/* ------------------------------------------------------------------ ADXL355 (datasheet register map) */
#define REG_DEVID_AD 0x00u  /* reads 0xAD */
#define REG_DEVID_MST 0x01u /* reads 0x1D */
#define REG_PARTID 0x02u    /* reads 0xED */
#define REG_STATUS 0x04u    /* bit 0 DATA_RDY */
#define REG_XDATA3 0x08u    /* XDATA3..ZDATA1: 0x08..0x10 */
#define REG_FILTER 0x28u    /* bits 6:4 HPF_CORNER, bits 3:0 ODR_LPF */
#define REG_RANGE 0x2Cu     /* bits 1:0 range: 01 = +/-2 g */
#define REG_POWER_CTL 0x2Du /* bit 0 STANDBY (1 after reset), bit 1 TEMP_OFF, bit 2 DRDY_OFF */
#define REG_RESET 0x2Fu     /* write 0x52: reset as at power-on */

#define ODR_125_HZ 0x05u   /* ODR_LPF code 0101: 125 Hz output, low-pass at 31.25 Hz */
#define RATE_MHZ 125000u   /* the same rate in the frame's unit, mHz */
#define PERIOD_US 8000u    /* 1 / 125 Hz */
#define FULL_SCALE 524287  /* 20-bit word: +/-2.048 g at the 2 g range */

#define SAMPLES_PER_FRAME 10u
#define N_CHANNELS 3u

/* SPI command byte: register address in bits 7:1, bit 0 set for a read; the address
 * increments on each byte of a burst. */
static void adxl355_read(uint8_t reg, uint8_t *data, size_t n)
{
    uint8_t command = (uint8_t)((reg << 1) | 0x01u);
    gpio_put(PIN_CS, 0);
    spi_write_blocking(ADXL355_SPI, &command, 1);
    spi_read_blocking(ADXL355_SPI, 0x00, data, n);
    gpio_put(PIN_CS, 1);
}

static void adxl355_write(uint8_t reg, uint8_t value)
{
    uint8_t command[2] = {(uint8_t)(reg << 1), value};
    gpio_put(PIN_CS, 0);
    spi_write_blocking(ADXL355_SPI, command, 2);
    gpio_put(PIN_CS, 1);
}

static uint8_t adxl355_read_byte(uint8_t reg)
{
    uint8_t value;
    adxl355_read(reg, &value, 1);
    return value;
}

/* One axis from its DATA3, DATA2, DATA1 bytes: 20-bit two's complement, left-justified
 * (DATA1 bits 3:0 are not data), sign-extended to int32 counts. */
static int32_t adxl355_counts(const uint8_t *b)
{
    uint32_t raw = ((uint32_t)b[0] << 12) | ((uint32_t)b[1] << 4) | ((uint32_t)b[2] >> 4);
    return (int32_t)(raw ^ 0x80000u) - (int32_t)0x80000;
}

static bool adxl355_start(void)
{
    bool identified;
    uint8_t range;

    spi_init(ADXL355_SPI, SPI_CLOCK_HZ);
    spi_set_format(ADXL355_SPI, 8, SPI_CPOL_0, SPI_CPHA_0, SPI_MSB_FIRST);
    gpio_set_function(PIN_MISO, GPIO_FUNC_SPI);
    gpio_set_function(PIN_SCK, GPIO_FUNC_SPI);
    gpio_set_function(PIN_MOSI, GPIO_FUNC_SPI);
    gpio_init(PIN_CS);
    gpio_put(PIN_CS, 1);
    gpio_set_dir(PIN_CS, GPIO_OUT);

    adxl355_write(REG_RESET, 0x52u);
    sleep_ms(10);
    identified = adxl355_read_byte(REG_DEVID_AD) == 0xADu &&
                 adxl355_read_byte(REG_DEVID_MST) == 0x1Du &&
                 adxl355_read_byte(REG_PARTID) == 0xEDu;
    range = adxl355_read_byte(REG_RANGE);
    adxl355_write(REG_RANGE, (uint8_t)((range & 0xFCu) | 0x01u)); /* keep I2C_HS and INT_POL */
    adxl355_write(REG_FILTER, ODR_125_HZ);                         /* high-pass off */
    adxl355_write(REG_POWER_CTL, 0x00u);                           /* measure, temperature on, DRDY on */
    return identified;
}

#if !SEND_TEXT_LINES
/* FNV-1a of the flash chip's 64-bit unique id: a stable 32-bit board identity. */
static uint32_t board_identity(void)
{
    pico_unique_board_id_t id;
    uint32_t hash = 2166136261u;
    size_t i;
    pico_get_unique_board_id(&id);
    for (i = 0; i < PICO_UNIQUE_BOARD_ID_SIZE_BYTES; i++)
        hash = (hash ^ id.id[i]) * 16777619u;
    return hash;
}
#endif

/* Bytes out as they are: putchar_raw skips the stdio CR/LF translation. */
static void send_bytes(const uint8_t *data, size_t n)
{
    size_t i;
    for (i = 0; i < n; i++)
        putchar_raw(data[i]);
}

int main(void)
{
    static int32_t counts[SAMPLES_PER_FRAME * N_CHANNELS]; /* interleaved E N Z E N Z ... */
#if SEND_TEXT_LINES
    static char line[ST_FRAME_TEXT_LINE_BYTES(N_CHANNELS)];
#else
    static uint8_t frame[ST_FRAME_BYTES(SAMPLES_PER_FRAME, N_CHANNELS)];
    st_frame_header h;
    uint64_t samples_sent = 0; /* the sample clock: the ADXL355's own oscillator */
#endif
    unsigned n_in_frame = 0;
    uint8_t frame_flags = 0;
    uint8_t sensor_flags;
    uint64_t last_sample_us = 0;
    bool have_sample = false;

    stdio_init_all(); /* USB CDC: the baud rate the node sets is ignored */
    sensor_flags = adxl355_start() ? 0u : ST_FRAME_FLAG_SELFTEST_FAIL;
#if !SEND_TEXT_LINES
    h.sequence = 0; /* from 0 at every reset: the node sees the restart */
    h.rate_mhz = RATE_MHZ;
    h.board_id = board_identity();
    h.time_fix = ST_FRAME_TIME_FIX_FREE;
#else
    (void)sensor_flags; /* text lines carry no status */
#endif

    for (;;) {
        uint8_t xyz[9];
        int32_t *sample = &counts[n_in_frame * N_CHANNELS];
        uint64_t now_us;
        unsigned c;

        if ((adxl355_read_byte(REG_STATUS) & 0x01u) == 0u)
            continue; /* no new sample yet */
        now_us = time_us_64();
        if (have_sample && now_us - last_sample_us > PERIOD_US + PERIOD_US / 2u)
            frame_flags |= ST_FRAME_FLAG_OVERRUN; /* a sample was overwritten before it was read */
        have_sample = true;
        last_sample_us = now_us;

        adxl355_read(REG_XDATA3, xyz, sizeof xyz); /* one burst: the three axes of one sample */
        for (c = 0; c < N_CHANNELS; c++) {
            sample[c] = adxl355_counts(&xyz[3 * c]);
            if (sample[c] >= FULL_SCALE || sample[c] <= -FULL_SCALE - 1)
                frame_flags |= ST_FRAME_FLAG_CLIPPING;
        }
#if SEND_TEXT_LINES
        {
            size_t n = st_frame_encode_text_line(line, sizeof line, sample, N_CHANNELS, 1);
            send_bytes((const uint8_t *)line, n);
            frame_flags = 0;
        }
#else
        if (++n_in_frame == SAMPLES_PER_FRAME) {
            size_t n;
            h.timestamp_us = START_UTC_US + (int64_t)(samples_sent * PERIOD_US);
            h.flags = (uint8_t)(frame_flags | sensor_flags);
            n = st_frame_encode_v2(frame, sizeof frame, &h, counts, SAMPLES_PER_FRAME, N_CHANNELS);
            send_bytes(frame, n);
            h.sequence++;
            samples_sent += SAMPLES_PER_FRAME;
            frame_flags = 0;
            n_in_frame = 0;
        }
#endif
    }
}
