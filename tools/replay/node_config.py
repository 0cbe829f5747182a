"""``replay-test --node-config FILE``: a node's TOML under the replay's own settings.

A bench-top run exercises any output a field node has (archive, SeedLink, MQTT, status
page, actions) by handing each record's node the same configuration file. The replay
still decides what it must to drive and score the node: the pty it reads, the model, the
events and status files it scores, its idle exit, the counts' scale it digitized with,
binary frames on a serial line, and the station code each record carries. Those keys, when
the file sets them, are overridden by the node's flags (flags win over the file), and the
replay says which in one line.
"""

from __future__ import annotations

from pathlib import Path

# Keys the replay sets on every node it starts: NodeConfig attribute -> what the replay gives it.
OWNED = {"port": "its pty", "model": "--model", "events": "OUT/records/*/events.jsonl",
         "status": "OUT/records/*/node_status.json", "idle_exit_s": "--idle-exit-s",
         "counts_per_mps2": "the --sensor's scale", "source": "serial", "protocol": "binary",
         "trust_port_name": "set only with unplug faults", "station": "the record's station code"}


def node_config_args(path, model: str) -> tuple[list[str], str | None]:
    """The node flags that load ``path`` under the replay's own settings, and the note to print.

    The file is read and checked as the node will read it (every key, its value and the
    keys that go together), with the replay's port and model in place.

    Parameters
    ----------
    path : str or Path
        The node's TOML configuration (``deploy/node.toml`` style).
    model : str
        The replay's ``--model``.

    Returns
    -------
    args : list of str
        ``--config PATH``, then ``--source serial`` / ``--protocol binary`` where the file
        sets another, and ``--min-rate-hz`` / ``--max-rate-hz`` where it sets them (the
        replay refuses records outside them, as the node would).
    note : str or None
        One line naming the file's keys the replay overrides; None when there are none.

    Raises
    ------
    ValueError
        One line: no such file, not TOML, an unknown key or a value the node refuses.
    """
    from edge_runtime.config import BY_KEY, build_config, read_toml

    path = Path(path)
    values = read_toml(path)  # ConfigError (a ValueError) naming the file, section and key
    build_config(values, {"port": "replay-pty", "model": str(model)}, source=f"--node-config {path}")
    args = ["--config", str(path)]
    for name, wanted in (("source", "serial"), ("protocol", "binary")):
        if values.get(name, wanted) != wanted:
            args += [f"--{name}", wanted]
    for name in ("min_rate_hz", "max_rate_hz"):
        if name in values:
            args += ["--" + name.replace("_hz", "").replace("_", "-"), repr(float(values[name]))]
    owned = [f"[{s.section}] {s.key}" for s in BY_KEY.values() if s.name in OWNED and s.name in values]
    note = None
    if owned:
        note = (f"--node-config {path}: the replay sets {', '.join(owned)} itself "
                f"(the file's values are overridden)")
    return args, note
