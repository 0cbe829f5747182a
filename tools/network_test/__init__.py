"""``python -m tools network-test``: a synthetic seismic network replayed into real nodes and scored."""
