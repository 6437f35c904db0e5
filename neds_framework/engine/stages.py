"""The engine's stages, registered through the same entry-point path as every plugin."""

from neds_framework.engine.prepare import PrepareSettings, run_prepare
from neds_framework.hookspecs import hookimpl


@hookimpl
def neds_register_stages(register):
    register("prepare", run_prepare, settings=PrepareSettings)
