"""The node's outputs: the registry the event sink is built from.

Each entry of :data:`OUTPUTS` is a name and a factory ``factory(config, context)`` that
returns a :class:`~edge_runtime.sink.Consumer`, or ``None`` when the config does not ask
for that output. They are built and called in this order: the snippet writer adds the
names of its files to an event before the event file writes it, and alerts go out only
for what the event file took. A new output (archive, stream server, message broker) is
a consumer class in its own module, its keys in :data:`edge_runtime.config.SETTINGS`,
and one entry here.
"""

from __future__ import annotations

from dataclasses import dataclass

from .actions import AlertActions, build_actions
from .events import EventFile, JsonlWriter
from .sink import EventSink, Queued
from .snippets import SnippetWriter


@dataclass(frozen=True)
class OutputContext:
    """What outputs may need beyond the config.

    Attributes
    ----------
    components : tuple of str
        Component codes of the model's channels, in order (``("E", "N", "Z")``).
    window_s : float
        The model's window length, s.
    faults : LimitedLog
        The node's rate limiter.
    status : callable, optional
        The node's status (``Node.status``), to be called on the loop's thread only
        (an output's ``tick``); None where no node runs.
    """

    components: tuple
    window_s: float
    faults: object
    status: object = None


def _snippets(config, ctx: OutputContext):
    if not config.snippets:
        return None
    d = config.detector
    keep_s = (config.snippet_pre_s + ctx.window_s + d.max_event_s + d.off_s + d.lookback_s
              + config.snippet_post_s)
    return SnippetWriter(config.snippets, config.station, ctx.components, ctx.window_s,
                         config.snippet_pre_s, config.snippet_post_s, keep_s, ctx.faults)


def _event_file(config, ctx: OutputContext):
    writer = JsonlWriter(config.events)
    writer.start()  # read the file back: torn last line kept aside, crash-open events closed
    return EventFile(writer)


def _actions(config, ctx: OutputContext):
    return AlertActions(build_actions(config, ctx.faults))


def _seedlink(config, ctx: OutputContext):
    if not getattr(config, "seedlink_listen", None):
        return None
    from .network.seedlink import build_seedlink_output  # the network extra, only when asked for

    # Records are sent when full (seconds of data), so frames may wait a second to be packed.
    return Queued(build_seedlink_output(config, ctx.components), batch_s=1.0)


def _mqtt(config, ctx: OutputContext):
    if not getattr(config, "mqtt_broker", None):
        return None
    from .network.mqtt import build_mqtt_output  # paho-mqtt (the network extra), only when asked for

    return build_mqtt_output(config, ctx)  # a Queued consumer of its own (it sends health from tick)


def _stationxml(config, ctx: OutputContext):
    if not (getattr(config, "stationxml", None) or getattr(config, "archive", None)):
        return None
    from .network.stationxml import build_stationxml_output  # xml.etree, only when asked for

    return build_stationxml_output(config, ctx.components)


def _archive(config, ctx: OutputContext):
    if not getattr(config, "archive", None):
        return None
    from .network.archive import build_archive_output  # pymseed (the network extra), only when asked for

    return build_archive_output(config, ctx.components)  # a Queued consumer: a slow disk never waits


def _web(config, ctx: OutputContext):
    if not getattr(config, "web_listen", None):
        return None
    from .network.web import build_web_output  # standard library: its HTTP server only when asked for

    return build_web_output(config, ctx)  # appends under a lock; the server reads copies on its threads


# Name -> factory(config, context) -> Consumer or None; built and called in this order.
OUTPUTS = {"snippets": _snippets, "events": _event_file, "actions": _actions, "seedlink": _seedlink,
           "mqtt": _mqtt, "stationxml": _stationxml, "archive": _archive, "web": _web}


def build_sink(config, ctx: OutputContext, hold=None, count_error=None) -> EventSink:
    """The event sink with every output the config asks for, in registry order.

    Parameters
    ----------
    config : NodeConfig
    ctx : OutputContext
    hold : SecondStage, optional
        The second stage, when ``[node] source_model`` is set.
    count_error : callable
        Counts a record an output could not take (the pipeline's ``errors``).
    """
    consumers = [c for c in (factory(config, ctx) for factory in OUTPUTS.values()) if c is not None]
    return EventSink(consumers, hold=hold, faults=ctx.faults, count_error=count_error)
