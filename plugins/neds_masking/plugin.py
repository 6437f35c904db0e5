"""Registers the built-in maskers (entry point `neds_masking`)."""

from neds_framework.api import hookimpl
from neds_masking.mixture import MixtureMasker
from neds_masking.multitask import NedsMultitaskMasker
from neds_masking.schemes import (
    CausalMasker,
    InterRegionMasker,
    IntraRegionMasker,
    NeuronMasker,
    RandomMasker,
    TemporalMasker,
)


@hookimpl
def neds_register_maskers(register):
    register("neds_multitask", NedsMultitaskMasker)
    register("temporal", TemporalMasker)
    register("random", RandomMasker)
    register("causal", CausalMasker)
    register("neuron", NeuronMasker)
    register("inter_region", InterRegionMasker)
    register("intra_region", IntraRegionMasker)
    register("mixture", MixtureMasker)
