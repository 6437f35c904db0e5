"""`neds-run export` and `neds-run card`."""

from __future__ import annotations

import argparse
from pathlib import Path

from neds_framework.api import NedsError, RunRecord, export_run_weights, get_plugins, run_recipe_of


def _registries():
    return get_plugins().registries


def _run_folder(path: Path) -> Path:
    if not (path / "run.h5").exists():
        raise NedsError(f"{path}: no run record (run.h5) there; give the folder of a run made by neds-run")
    return path


class ExportCommand:
    help = "write a run's weights (.safetensors) or its test predictions in BrainWideBench's layout"

    @staticmethod
    def add_arguments(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("runs", nargs="+", type=Path, metavar="RUN", help="run folder(s); for --bwb one per seed")
        parser.add_argument("--weights", type=Path, metavar="FILE.safetensors", help="write the model's weights here")
        parser.add_argument("--checkpoint", default="best", choices=("best", "last"), help="which checkpoint (default best)")
        parser.add_argument("--bwb", type=Path, metavar="DIR", help="write BrainWideBench prediction files under DIR/<label>/")
        parser.add_argument("--label", help="BrainWideBench submission label (default: the first run's folder name)")
        parser.add_argument("--truth", type=Path, metavar="DIR", help="with --bwb: also write the matching ground truth here")
        parser.add_argument("--device", default="cpu", help="device for the predictions (default cpu)")

    @staticmethod
    def run(args: argparse.Namespace) -> int:
        runs = [_run_folder(r) for r in args.runs]
        if not args.weights and not args.bwb:
            raise NedsError("export: say what to write: --weights FILE.safetensors and/or --bwb DIR")
        if args.truth and not args.bwb:
            raise NedsError("export --truth: goes with --bwb DIR")
        if args.weights:
            if len(runs) != 1:
                raise NedsError("export --weights: give one run")
            path = export_run_weights(runs[0], args.weights, args.checkpoint)
            print(f"wrote {path}")
        if args.bwb:
            from neds_export.bwb import export_bwb

            label = args.label or runs[0].resolve().name
            written = export_bwb(runs, args.bwb, label, _registries(), args.truth, device=args.device)
            print(f"wrote {len(written)} BrainWideBench file(s) under {args.bwb / label}"
                  + (f" and ground truth under {args.truth}" if args.truth else ""))
        return 0


class CardCommand:
    help = "write a run's model card (MODEL_CARD.md) and BrainWideBench metadata (bwb_metadata.json)"

    @staticmethod
    def add_arguments(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("run", type=Path, help="a run folder (holding run.h5)")

    @staticmethod
    def run(args: argparse.Namespace) -> int:
        from neds_export.card import write_card

        run = _run_folder(args.run)
        registries = _registries()
        recipe = run_recipe_of(run, registries)
        for written in write_card(run, RunRecord.load(run), recipe, registries):
            print(f"wrote {written}")
        return 0
