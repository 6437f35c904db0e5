"""Registers the built-in maskers (entry point `neds_masking`)."""

from neds_framework import hookimpl
from neds_masking.multitask import NedsMultitaskMasker


@hookimpl
def neds_register_maskers(register):
    register("neds_multitask", NedsMultitaskMasker)
