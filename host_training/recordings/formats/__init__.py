"""Waveform file formats the record reader knows, in the manner of ObsPy's plug-ins.

Each format is one module that states what its files hold and registers an ``is`` / ``read``
pair (:class:`~.base.RecordingFormat`); :mod:`.registry` lists them in the order they are
tried. Adding a format is one module here and one entry in :data:`.registry.FORMATS`.
"""
