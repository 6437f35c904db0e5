"""neds_nwb: the NWB data source (IBL Brain-Wide Map layout, DANDI 000409) and the ALF-to-NWB converter.

pynwb, brainbox and the dandi client are imported when a session is loaded or converted, not
when the plugin registers, so `neds-run plugins` and recipe validation stay fast.
"""

from __future__ import annotations

from neds_framework.api import hookimpl
from neds_nwb.command import NwbCommand
from neds_nwb.source import NwbSource


@hookimpl
def neds_register_data_sources(register):
    register("nwb", NwbSource)


@hookimpl
def neds_register_commands(register):
    register("nwb", NwbCommand)
