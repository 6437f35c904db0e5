"""Registers the built-in tokenizers and heads (entry point `neds_modalities`)."""

from neds_framework import hookimpl
from neds_modalities.heads import ClassificationHead, RegressionHead, SpikesHead
from neds_modalities.tokenizers import BinnedTokenizer, SpikesTokenizer, StaticTokenizer


@hookimpl
def neds_register_tokenizers(register):
    register("spikes", SpikesTokenizer)
    register("lfp", BinnedTokenizer)  # band power: F features per bin
    register("dynamic", BinnedTokenizer)  # wheel, whisker, any scalar per bin
    register("static", StaticTokenizer)


@hookimpl
def neds_register_heads(register):
    register("spikes", SpikesHead)
    register("regression", RegressionHead)
    register("classification", ClassificationHead)
