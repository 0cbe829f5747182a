"""MEMS accelerometer models: scale, range, resolution and self-noise from datasheets.

One table shared by the node (counts to m/s^2, clipping and plausibility), the replay
simulator (m/s^2 to the counts a real part would send) and the training-data generator
(self-noise and quantization at the part's level), so the three never disagree.

Figures are the datasheets' typical values:

========  ==========  ====  ==============  =================  =======================
part      ranges (g)  bits  LSB per g       noise (ug/sqrt Hz)  datasheet
========  ==========  ====  ==============  =================  =======================
ADXL355   2, 4, 8     20    256000 / range  22.5                Analog Devices Rev. D
          (2.048, 4.096, 8.192 full scale)
ADXL345   2, 4, 8, 16 13    256 (full res)  290                 Analog Devices Rev. G
LIS3DH    2, 4, 8, 16 12    1000 / (g/2)    220                 ST DocID17530 (HR mode)
MPU-6050  2, 4, 8, 16 16    16384 / (g/2)   400                 InvenSense PS-MPU-6000A
RS4D      2           24    384500 x g      (not published)     Raspberry Shake (EN? channels)
========  ==========  ====  ==============  =================  =======================

``rs4d-2g`` is the accelerometer of a Raspberry Shake 4D as its datacast or SeedLink
server delivers it: 384,500 counts per m/s^2, the nominal sensitivity Raspberry Shake
publishes for the EN? channels (a unit's own response is served by Raspberry Shake's
FDSN web service; set ``[node] counts_per_mps2`` where it differs). Its self-noise is not
published, so it cannot be drawn as a generator's part.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

G_MPS2 = 9.80665  # standard gravity, m/s^2


@dataclass(frozen=True)
class SensorModel:
    """One accelerometer part at one range setting.

    Attributes
    ----------
    name : str
        Key in :data:`SENSORS`, e.g. ``"adxl355-2g"``.
    range_g : float
        Full scale, +/- g.
    bits : int
        Resolution of the output word (signed), bits.
    lsb_per_g : float
        Sensitivity, counts per g.
    noise_ug_rthz : float
        Self-noise density, ug/sqrt(Hz).
    max_rate_hz : float
        Highest output data rate, Hz.
    """

    name: str
    range_g: float
    bits: int
    lsb_per_g: float
    noise_ug_rthz: float
    max_rate_hz: float

    @property
    def counts_per_mps2(self) -> float:
        """Sensitivity in counts per m/s^2."""
        return self.lsb_per_g / G_MPS2

    @property
    def max_count(self) -> int:
        """Largest magnitude the part outputs, counts (the smaller of range and word)."""
        return int(min(2 ** (self.bits - 1) - 1, round(self.range_g * self.lsb_per_g)))

    @property
    def full_scale_mps2(self) -> float:
        """Largest acceleration the part can report, m/s^2."""
        return self.max_count / self.counts_per_mps2

    def self_noise_rms_mps2(self, sampling_rate_hz: float) -> float:
        """RMS self-noise over the band 0 to Nyquist, m/s^2."""
        if sampling_rate_hz <= 0:
            raise ValueError(f"sampling_rate_hz must be > 0, got {sampling_rate_hz}")
        if not np.isfinite(self.noise_ug_rthz):
            raise ValueError(f"{self.name}: no self-noise figure is published for this part")
        return self.noise_ug_rthz * 1e-6 * G_MPS2 * np.sqrt(sampling_rate_hz / 2.0)

    def digitize(self, data_mps2: np.ndarray) -> tuple[np.ndarray, int]:
        """Acceleration to the counts this part would output.

        Parameters
        ----------
        data_mps2 : numpy.ndarray
            Acceleration, m/s^2, any shape. NaN or inf samples are not allowed.

        Returns
        -------
        counts : numpy.ndarray
            int32, same shape, rounded and clipped to +/- :attr:`max_count`.
        n_clipped : int
            Number of samples that were beyond the part's range.
        """
        x = np.asarray(data_mps2, dtype=np.float64)
        if not np.all(np.isfinite(x)):
            raise ValueError("data_mps2 holds NaN or inf samples")
        counts = np.round(x * self.counts_per_mps2)
        limit = self.max_count
        n_clipped = int(np.count_nonzero(np.abs(counts) > limit))
        return np.clip(counts, -limit, limit).astype(np.int32), n_clipped

    def self_noise(self, rng: np.random.Generator, shape, sampling_rate_hz: float) -> np.ndarray:
        """White self-noise at the datasheet density, m/s^2, float64 of ``shape``."""
        return rng.normal(0.0, self.self_noise_rms_mps2(sampling_rate_hz), size=shape)

    def to_dict(self) -> dict:
        return asdict(self)


def _family(part: str, ranges_g, bits: int, lsb_per_g, noise: float, max_rate_hz: float) -> dict:
    return {f"{part}-{r:g}g": SensorModel(f"{part}-{r:g}g", float(r), bits, float(lsb_per_g(r)), noise,
                                          max_rate_hz)
            for r in ranges_g}


SENSORS: dict[str, SensorModel] = {
    # ADXL355 full scale is 2.048/4.096/8.192 g; 3.9 ug/LSB at the 2 g setting.
    **{k: SensorModel(k, v.range_g * 1.024, v.bits, v.lsb_per_g, v.noise_ug_rthz, v.max_rate_hz)
       for k, v in _family("adxl355", (2, 4, 8), 20, lambda r: 256000.0 * 2 / r, 22.5, 4000.0).items()},
    # Full-resolution mode: 3.9 mg/LSB at every range, the word grows with the range.
    **_family("adxl345", (2, 4, 8, 16), 13, lambda r: 256.0, 290.0, 3200.0),
    **_family("lis3dh", (2, 4, 8, 16), 12, lambda r: 1000.0 * 2 / r, 220.0, 1344.0),
    **_family("mpu6050", (2, 4, 8, 16), 16, lambda r: 16384.0 * 2 / r, 400.0, 1000.0),
    "rs4d-2g": SensorModel("rs4d-2g", 2.0, 24, 384500.0 * G_MPS2, float("nan"), 100.0),
}
DEFAULT_SENSOR = "adxl355-2g"


def get_sensor(name: str) -> SensorModel:
    """The sensor model called ``name`` (case-insensitive), e.g. ``"ADXL355-2g"``.

    Raises
    ------
    ValueError
        If the name is unknown; the message lists the known ones.
    """
    key = str(name).strip().lower().replace("mpu-6050", "mpu6050")
    try:
        return SENSORS[key]
    except KeyError:
        raise ValueError(f"unknown sensor {name!r}; known: {', '.join(SENSORS)}") from None
