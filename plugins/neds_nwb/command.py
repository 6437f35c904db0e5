"""`neds-run nwb`: convert the ALF sessions of a local ONE cache (e.g. `neds-run synth`'s) to NWB files."""

from __future__ import annotations

import argparse
from pathlib import Path

from neds_framework.api import NedsError


class NwbCommand:
    help = "convert the sessions of a local ONE cache (e.g. from neds-run synth) to IBL Brain-Wide Map NWB files"

    @staticmethod
    def add_arguments(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--one-cache", required=True, help="the local ONE cache folder (holding sessions.pqt)")
        parser.add_argument("--out", required=True, help="folder to write the NWB files into (created), as sub-<subject>/...nwb")
        parser.add_argument("--eid", action="append", default=[], metavar="EID",
                            help="convert only this session (repeatable; default: every session of the cache)")

    @staticmethod
    def run(args: argparse.Namespace) -> int:
        from neds_nwb.write import convert_cache

        out = Path(args.out)
        if out.exists() and not out.is_dir():
            raise NedsError(f"nwb --out {out}: that is a file; give a folder to write the NWB files into (it is created)")
        paths = convert_cache(args.one_cache, out, eids=args.eid, progress=True)
        print(f"wrote {len(paths)} NWB file(s) to {out}")
        for path in paths:
            print(f"  {path}")
        return 0
