"""neds_ibl: the IBL data source (ONE-api + brainbox) and the synthetic IBL session generator.

Heavy imports (ONE, brainbox) happen when a session is loaded, not when the plugin registers,
so `neds-run plugins` and recipe validation stay fast.
"""

from __future__ import annotations

from neds_framework.api import hookimpl
from neds_ibl.source import IblSource
from neds_ibl.synth_command import SynthCommand


@hookimpl
def neds_register_data_sources(register):
    register("ibl", IblSource)


@hookimpl
def neds_register_commands(register):
    register("synth", SynthCommand)
