"""``python -m host_training prepare {stead,seisbench,sac,merge}``: the one registry of readers.

Each training data source is a module with ``add_arguments(parser)`` (its own options) and a
``prepare_*(args) -> exit code`` that writes windows through :class:`~.runs.PrepareRun`;
:data:`READERS` names it once, and the parser and the dispatch are both made from that
table. To add a source: write its module and add one :class:`PrepareReader` entry.
"""

from __future__ import annotations

import argparse
import logging
import sys
from dataclasses import dataclass
from types import ModuleType
from typing import Callable

from edge_runtime.helpformat import HelpFormatter

from . import merge, sac_folders, seisbench_io, stead
from .runs import PrepareError


@dataclass(frozen=True)
class PrepareReader:
    """One ``prepare`` command.

    Attributes
    ----------
    name : str
        The subcommand (``stead``).
    help : str
        One line for ``prepare --help``.
    module : module
        Its module: ``add_arguments(parser)`` adds its options; the first paragraph of its
        docstring is the command's description.
    run : callable
        ``run(args) -> exit code``.
    windows : bool
        Whether it cuts windows (and so takes ``--sampling-rate``, ``--window-s``, ...).
    """

    name: str
    help: str
    module: ModuleType
    run: Callable[[argparse.Namespace], int]
    windows: bool = True


READERS = (
    PrepareReader("stead", "STEAD's HDF5 + CSV -> windows (Clements' clean-subset recipe)", stead,
                  stead.prepare_stead),
    PrepareReader("seisbench", "any SeisBench-format data set (metadata.csv + waveforms.hdf5) -> windows",
                  seisbench_io, seisbench_io.prepare_seisbench),
    PrepareReader("sac", "per-station folders of SAC/miniSEED event and noise records -> windows",
                  sac_folders, sac_folders.prepare_sac),
    PrepareReader("merge", "merge prepared datasets: class balance, split by event/date/station, data card",
                  merge, merge.prepare_merge, windows=False),
)


def main_prepare(args) -> int:
    """Entry point of ``python -m host_training prepare ...`` (parsed ``args``)."""
    try:
        reader = next((r for r in READERS if r.name == args.source), None)
        if reader is None:
            raise PrepareError(f"unknown prepare command {args.source}")
        return reader.run(args)
    except PrepareError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; rerun the same command to resume", file=sys.stderr)
        return 130


def add_common_arguments(p, window: bool = True) -> None:
    p.add_argument("--out", required=True, help="output dataset folder (SeisBench format)")
    p.add_argument("--seed", type=int, default=0, help="seed of every random choice")
    p.add_argument("--overwrite", action="store_true",
                   help="replace a finished --out (default: report it done and exit)")
    if window:
        p.add_argument("--sampling-rate", type=float, default=100.0,
                       help="sampling rate of the stored windows, Hz")
        p.add_argument("--window-s", type=float, default=2.0, help="window length, s")
        p.add_argument("--max-shift-s", type=float, default=0.6,
                       help="P/S windows are centred at the pick plus a seeded shift of at most this, s")
        p.add_argument("--noise-windows", type=int, default=2,
                       help="noise windows cut from each noise trace")
        p.add_argument("--fractions", type=float, nargs=3, default=(0.7, 0.15, 0.15),
                       metavar=("TRAIN", "VAL", "TEST"),
                       help="provisional split fractions by event (prepare merge re-splits)")

def add_prepare_parser(sub) -> None:
    """Add ``prepare {stead,seisbench,sac,merge}`` to the ``host_training`` parser."""
    fmt = HelpFormatter
    p = sub.add_parser("prepare", help="turn STEAD, SeisBench or SAC data into a windows dataset",
                       description="Readers that write labelled P / S / noise windows in SeisBench's "
                                   "format (metadata.csv + waveforms.hdf5), and 'merge' that balances, "
                                   "splits and writes the data card. Every command is seeded and "
                                   "resumable: rerun it after an interruption.")
    psub = p.add_subparsers(dest="source", required=True)
    for reader in READERS:
        s = psub.add_parser(reader.name, help=reader.help,
                            description=(reader.module.__doc__ or reader.help).split("\n\n")[0],
                            formatter_class=fmt)
        reader.module.add_arguments(s)
        add_common_arguments(s, window=reader.windows)
        s.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bars")


def main(argv=None) -> int:
    """``prepare ...`` on its own (what ``python -m host_training prepare ...`` runs)."""
    parser = argparse.ArgumentParser(prog="python -m host_training")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    add_prepare_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")
    return main_prepare(args)
