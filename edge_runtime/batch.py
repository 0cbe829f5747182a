"""What one read of a node's source gives: :class:`Batch`.

Kept apart from :mod:`edge_runtime.sources` (the registry) so that each source module can
return one without importing the registry that imports it.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Batch:
    """What one read of a source gave.

    Attributes
    ----------
    frames : list of Frame
        Decoded frames, in arrival order (the sequencer puts them in order).
    heard : bool
        Input arrived (even if no whole frame yet): the line is alive. The node exits
        after ``idle_exit_s`` without it, and releases frames held for a missing one
        after a quiet second.
    """

    frames: list = field(default_factory=list)
    heard: bool = False
