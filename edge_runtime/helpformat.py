"""Help text for every command line: a default is shown where it tells the reader something.

argparse's ``ArgumentDefaultsHelpFormatter`` appends ``(default: ...)`` to every option, which
makes an on/off flag read backwards (``--no-progress  no progress bars (default: True)``) and
adds ``(default: None)`` to options that simply have no value until given.
"""

from __future__ import annotations

import argparse

__all__ = ["HelpFormatter"]


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Defaults in ``--help`` for options that take a value and have one; none for flags."""

    def _get_help_string(self, action: argparse.Action) -> str:
        if action.nargs == 0 or action.default is None:
            return action.help or ""
        return super()._get_help_string(action)
