"""`neds-run synth`: write synthetic IBL sessions (ALF folders + ONE cache tables) to a folder."""

from __future__ import annotations

import argparse
from pathlib import Path

import attrs

from neds_framework.api import NedsError


class SynthCommand:
    help = "generate synthetic IBL sessions (ALF + ONE cache) that the ibl data source reads offline"

    @staticmethod
    def add_arguments(parser: argparse.ArgumentParser) -> None:
        from neds_ibl.synth import SynthSettings

        defaults = SynthSettings()
        parser.add_argument("--out", required=True, help="folder to write the ONE cache into (created)")
        parser.add_argument("--sessions", type=int, default=defaults.sessions, help="number of sessions (default %(default)s)")
        parser.add_argument("--seed", type=int, default=defaults.seed, help="random seed (default %(default)s)")
        parser.add_argument("--trials", type=int, default=defaults.trials, help="trials per session (default %(default)s)")
        parser.add_argument("--units", type=int, default=defaults.units, help="units per session (default %(default)s)")
        parser.add_argument("--probes", type=int, choices=(1, 2), default=defaults.probes, help="probes per session")
        parser.add_argument("--lfp", action="store_true", help="also write raw LFP (spikeglx .cbin)")
        parser.add_argument(
            "--drop", action="append", default=[], metavar="ALF_OBJECT", help="omit an ALF object, e.g. leftCamera (repeatable)"
        )
        parser.add_argument("--realistic", action="store_true", help="realistic sizes: 600 trials, 700 units, 2 probes")

    @staticmethod
    def run(args: argparse.Namespace) -> int:
        from neds_ibl.synth import SynthSettings, generate

        if args.sessions < 1 or args.trials < 10 or args.units < 1:
            raise NedsError("synth: --sessions must be ≥ 1, --trials ≥ 10 and --units ≥ 1")
        out = Path(args.out)
        if out.exists() and not out.is_dir():
            raise NedsError(f"synth --out {out}: that is a file; give a folder to write the ONE cache into (it is created)")
        settings = SynthSettings(
            sessions=args.sessions,
            seed=args.seed,
            trials=args.trials,
            units=args.units,
            probes=args.probes,
            lfp=args.lfp,
            drop=tuple(args.drop),
        )
        if args.realistic:
            settings = attrs.evolve(settings, trials=600, units=700, probes=2)
        eids = generate(args.out, settings, progress=True)
        print(f"wrote {len(eids)} session(s) to {args.out}")
        for eid in eids:
            print(f"  {eid}")
        return 0
