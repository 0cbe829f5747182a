"""SeismicTorch network centre: the nodes' picks associated into located earthquakes with a magnitude.

Runs on a workstation or a server, never on a node. It subscribes to the nodes' MQTT
messages (``docs/mqtt.md``), associates their picks with PyOcto, locates each event in
a 1-D layered model, sizes it from the peak displacement after P, and publishes,
archives (QuakeML) and alerts. ``python -m network_center --help``; the guide is
``docs/network-center.md``.
"""
