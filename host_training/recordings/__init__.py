"""Real recordings: waveform files of every format read into physical station records.

:func:`host_training.recordings.reader.read_records` is the entry; the formats it knows
are in :mod:`host_training.recordings.formats`.
"""
