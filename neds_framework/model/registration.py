"""Registers the core NEDS model through the same plugin hooks as every other component."""

from neds_framework.hookspecs import hookimpl
from neds_framework.model.neds import Neds


@hookimpl
def neds_register_models(register):
    register("neds", Neds)
