"""Registers the built-in modalities, tokenizers and heads (entry point `neds_modalities`)."""

from neds_framework.api import ModalitySpec, hookimpl
from neds_modalities.heads import ClassificationHead, RegressionHead, SpikesHead
from neds_modalities.tokenizers import BinnedTokenizer, SpikesTokenizer, StaticTokenizer

#: The NEDS modalities, as the IBL data source and the simulator produce them.
MODALITIES = {
    "spikes": ModalitySpec(
        role="neural", timing="per_bin", values="counts", masking="element",
        oracles={"oracle": "rates", "oracle_behaviour": "behaviour_rates"},
        source="spike counts per 20 ms bin and neuron (good units above 5 Hz); the simulator's true and "
               "behaviour-only rates are its oracles"),
    "lfp": ModalitySpec(role="neural", timing="per_bin", values="continuous",
                        source="LFP band power per bin, bands x channels as features"),
    "wheel": ModalitySpec(role="behaviour", timing="per_bin", values="continuous",
                          source="wheel speed per bin, min-max scaled on the train split"),
    "whisker": ModalitySpec(role="behaviour", timing="per_bin", values="continuous",
                            source="whisker-pad motion energy per bin (left camera, else right), min-max scaled"),
    "choice": ModalitySpec(role="behaviour", timing="per_trial", values="classes", n_classes=2,
                           source="the trial's choice (IBL choice -1 -> 0, +1 -> 1; no-go trials dropped)"),
    "block": ModalitySpec(role="behaviour", timing="per_trial", values="classes", n_classes=3,
                          source="the block prior probabilityLeft (0: 0.2, 1: 0.5, 2: 0.8)"),
}


@hookimpl
def neds_register_modalities(register):
    for name, spec in MODALITIES.items():
        register(name, spec)


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
