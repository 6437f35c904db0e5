"""Registers the built-in baselines (entry point `neds_baselines`)."""

from neds_baselines.decoders import RidgeDecoder
from neds_baselines.encoders import GlmEncoder, RrrEncoder
from neds_framework.api import hookimpl


@hookimpl
def neds_register_models(register):
    register("ridge_decoder", RidgeDecoder)
    register("rrr_encoder", RrrEncoder)
    register("glm_encoder", GlmEncoder)
