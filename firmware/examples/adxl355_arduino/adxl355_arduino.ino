// ADXL355 on SPI -> SeismicTorch node over the serial line (docs/firmware.md).
//
// Reads the ADXL355's 20-bit X/Y/Z data registers at 125 Hz and sends them as protocol-v2
// binary frames of 10 samples (or, with SEND_TEXT_LINES 1, one checksummed text line per
// sample). Mount the sensor with X east, Y north and Z up: channels go out as E, N, Z.
//
// The encoder is the SeismicTorchFrame library (the firmware/ folder of the repository, added
// with Sketch > Include Library > Add .ZIP Library, or copied into your libraries folder).
// The ADXL355 is a 3.3 V part: use a 3.3 V board (Nano 33 IoT, Zero, MKR, Nano RP2040
// Connect) or level shifters on a 5 V one.

#include <SPI.h>
#include <seismictorch_frame.h>

// ------------------------------------------------------------------ settings
static const uint8_t PIN_CS = 10;              // chip select; SCK/MOSI/MISO are the board's SPI pins
static const uint32_t SPI_CLOCK_HZ = 5000000;  // the ADXL355 takes up to 10 MHz, SPI mode 0
static const uint32_t SERIAL_BAUD = 921600;    // the node's [node] baudrate (ignored over native USB)
static const uint32_t BOARD_ID = 0x00000001;   // give every board its own number
// UTC of the first sample, microseconds since 1970: this board has no clock, so frames say
// time_fix "free" and event times are only as good as this value (2026-01-01T00:00:00Z here).
static const int64_t START_UTC_US = 1767225600000000LL;
#ifndef SEND_TEXT_LINES
#define SEND_TEXT_LINES 0  // 1: text lines (the node stamps the time), 0: binary v2 frames
#endif

// ------------------------------------------------------------------ ADXL355 (datasheet register map)
static const uint8_t REG_DEVID_AD = 0x00;   // reads 0xAD
static const uint8_t REG_DEVID_MST = 0x01;  // reads 0x1D
static const uint8_t REG_PARTID = 0x02;     // reads 0xED
static const uint8_t REG_STATUS = 0x04;     // bit 0 DATA_RDY
static const uint8_t REG_XDATA3 = 0x08;     // XDATA3..ZDATA1: 0x08..0x10
static const uint8_t REG_FILTER = 0x28;     // bits 6:4 HPF_CORNER, bits 3:0 ODR_LPF
static const uint8_t REG_RANGE = 0x2C;      // bits 1:0 range: 01 = +/-2 g
static const uint8_t REG_POWER_CTL = 0x2D;  // bit 0 STANDBY (1 after reset), bit 1 TEMP_OFF, bit 2 DRDY_OFF
static const uint8_t REG_RESET = 0x2F;      // write 0x52: reset as at power-on

static const uint8_t ODR_125_HZ = 0x05;     // ODR_LPF code 0101: 125 Hz output, low-pass at 31.25 Hz
static const uint32_t RATE_MHZ = 125000u;   // the same rate in the frame's unit, mHz
static const uint32_t PERIOD_US = 8000u;    // 1 / 125 Hz
static const int32_t FULL_SCALE = 524287;   // 20-bit word: +/-2.048 g at the 2 g range

static const uint16_t SAMPLES_PER_FRAME = 10;
static const uint8_t N_CHANNELS = 3;

static const SPISettings ADXL355_SPI(SPI_CLOCK_HZ, MSBFIRST, SPI_MODE0);

// SPI command byte: register address in bits 7:1, bit 0 set for a read.
static void adxl355_read(uint8_t reg, uint8_t *data, uint8_t n)
{
    SPI.beginTransaction(ADXL355_SPI);
    digitalWrite(PIN_CS, LOW);
    SPI.transfer((uint8_t)((reg << 1) | 0x01));
    for (uint8_t i = 0; i < n; i++)
        data[i] = SPI.transfer(0x00);  // the address increments on each byte
    digitalWrite(PIN_CS, HIGH);
    SPI.endTransaction();
}

static void adxl355_write(uint8_t reg, uint8_t value)
{
    SPI.beginTransaction(ADXL355_SPI);
    digitalWrite(PIN_CS, LOW);
    SPI.transfer((uint8_t)(reg << 1));
    SPI.transfer(value);
    digitalWrite(PIN_CS, HIGH);
    SPI.endTransaction();
}

static uint8_t adxl355_read_byte(uint8_t reg)
{
    uint8_t value;
    adxl355_read(reg, &value, 1);
    return value;
}

// One axis from its DATA3, DATA2, DATA1 bytes: 20-bit two's complement, left-justified
// (DATA1 bits 3:0 are not data), sign-extended to int32 counts.
static int32_t adxl355_counts(const uint8_t *b)
{
    uint32_t raw = ((uint32_t)b[0] << 12) | ((uint32_t)b[1] << 4) | ((uint32_t)b[2] >> 4);
    return (int32_t)(raw ^ 0x80000UL) - (int32_t)0x80000L;
}

static bool adxl355_start()
{
    adxl355_write(REG_RESET, 0x52);
    delay(10);
    bool identified = adxl355_read_byte(REG_DEVID_AD) == 0xAD &&
                      adxl355_read_byte(REG_DEVID_MST) == 0x1D &&
                      adxl355_read_byte(REG_PARTID) == 0xED;
    uint8_t range = adxl355_read_byte(REG_RANGE);
    adxl355_write(REG_RANGE, (uint8_t)((range & 0xFC) | 0x01));  // keep I2C_HS and INT_POL
    adxl355_write(REG_FILTER, ODR_125_HZ);                        // high-pass off
    adxl355_write(REG_POWER_CTL, 0x00);                           // measure, temperature on, DRDY on
    return identified;
}

// ------------------------------------------------------------------ frame assembly
static int32_t counts[SAMPLES_PER_FRAME * N_CHANNELS];  // interleaved E N Z E N Z ...
static uint16_t n_in_frame = 0;
static uint8_t frame_flags = 0;        // clipping and overrun of the frame being filled
static uint8_t sensor_flags = 0;       // ST_FRAME_FLAG_SELFTEST_FAIL when the part was not identified
static bool have_sample = false;
static uint32_t last_sample_us = 0;
#if SEND_TEXT_LINES
static char line[ST_FRAME_TEXT_LINE_BYTES(N_CHANNELS)];
#else
static uint8_t frame[ST_FRAME_BYTES(SAMPLES_PER_FRAME, N_CHANNELS)];
static uint32_t sequence = 0;          // from 0 at every reset: the node sees the restart
static uint64_t samples_sent = 0;      // the sample clock: the ADXL355's own oscillator
#endif

void setup()
{
    Serial.begin(SERIAL_BAUD);  // 8 data bits, no parity, 1 stop bit
    pinMode(PIN_CS, OUTPUT);
    digitalWrite(PIN_CS, HIGH);
    SPI.begin();
    if (!adxl355_start())
        sensor_flags = ST_FRAME_FLAG_SELFTEST_FAIL;
}

#if !SEND_TEXT_LINES
static void send_frame()
{
    st_frame_header h;
    h.sequence = sequence;
    h.timestamp_us = START_UTC_US + (int64_t)(samples_sent * PERIOD_US);
    h.rate_mhz = RATE_MHZ;
    h.board_id = BOARD_ID;
    h.flags = (uint8_t)(frame_flags | sensor_flags);
    h.time_fix = ST_FRAME_TIME_FIX_FREE;
    size_t n = st_frame_encode_v2(frame, sizeof frame, &h, counts, SAMPLES_PER_FRAME, N_CHANNELS);
    if (n > 0)
        Serial.write(frame, n);
    sequence++;
    samples_sent += SAMPLES_PER_FRAME;
    frame_flags = 0;
    n_in_frame = 0;
}
#endif

void loop()
{
    if ((adxl355_read_byte(REG_STATUS) & 0x01) == 0)
        return;  // no new sample yet
    uint32_t now_us = micros();
    if (have_sample && now_us - last_sample_us > PERIOD_US + PERIOD_US / 2)
        frame_flags |= ST_FRAME_FLAG_OVERRUN;  // a sample was overwritten before it was read
    have_sample = true;
    last_sample_us = now_us;

    uint8_t xyz[9];
    adxl355_read(REG_XDATA3, xyz, sizeof xyz);  // one burst: the three axes of one sample
    int32_t *sample = &counts[n_in_frame * N_CHANNELS];
    for (uint8_t c = 0; c < N_CHANNELS; c++) {
        sample[c] = adxl355_counts(&xyz[3 * c]);
        if (sample[c] >= FULL_SCALE || sample[c] <= -FULL_SCALE - 1)
            frame_flags |= ST_FRAME_FLAG_CLIPPING;
    }
#if SEND_TEXT_LINES
    size_t n = st_frame_encode_text_line(line, sizeof line, sample, N_CHANNELS, 1);
    if (n > 0)
        Serial.write((const uint8_t *)line, n);
#else
    if (++n_in_frame == SAMPLES_PER_FRAME)
        send_frame();
#endif
}
