"""The node in a seismic network: its outputs beyond the local files.

The SeedLink parts:

* :mod:`edge_runtime.network.miniseed`: 512-byte Steim-2 miniSEED records of the
  board's counts, packed by EarthScope's libmseed (``pymseed``), for the SeedLink ring
  and the SDS archive alike.
* :mod:`edge_runtime.network.ring`: the bounded in-memory ring of sequenced records.
* :mod:`edge_runtime.network.slproto`: the SeedLink 3.1 command language (no sockets).
* :mod:`edge_runtime.network.seedlink`: the SeedLink server and its output consumer.

The MQTT parts (docs/mqtt.md):

* :mod:`edge_runtime.network.picks`: P and S picks from the event records, with the peak
  acceleration, velocity and displacement of the first 3 s after the onset.
* :mod:`edge_runtime.network.mqtt`: picks, triggers, events and health to a broker through
  a disk queue (paho-mqtt, imported only when ``[mqtt] broker`` is set).

The SeedLink modules need the ``network`` extra (``pip install .[network]``) and are imported
only when the config asks for one of their outputs: a node without the extra imports
numpy, onnxruntime and pyserial only (tests/test_isolation.py).
"""
