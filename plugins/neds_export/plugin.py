"""neds_export: a run's results in the field's formats.

- ``neds-run export RUN [RUN ...] --bwb DIR [--truth DIR]``: test-split predictions in IBL
  BrainWideBench's submission layout (one run per seed), scorable by ``ibl-bwb-eval``;
- ``neds-run export RUN --weights FILE.safetensors``: portable weights carrying their recipe;
- ``neds-run card RUN``: the run's model card (Markdown) and BrainWideBench metadata (JSON), also
  written by the eval stage's ``card`` reporter.
"""

from __future__ import annotations

from neds_framework.api import hookimpl


@hookimpl
def neds_register_commands(register):
    from neds_export.commands import CardCommand, ExportCommand

    register("export", ExportCommand)
    register("card", CardCommand)


@hookimpl
def neds_register_reporters(register):
    from neds_export.card import CardReporter

    register("card", CardReporter)
