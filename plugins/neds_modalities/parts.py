"""The built-in modalities' model parts built by hand, for tests and benchmarks that make a NEDS
without a recipe (a recipe builds the same through `neds_framework.model.build.build_model`)."""

from __future__ import annotations

from neds_framework.api import ModalityParts
from neds_modalities.heads import ClassificationHead, RegressionHead, SpikesHead
from neds_modalities.plugin import MODALITIES
from neds_modalities.tokenizers import BinnedTokenizer, SpikesTokenizer, StaticTokenizer


def builtin_parts(names, hidden: int, n_bins: int, layout: str = "expanded", element_masks: bool = False) -> dict:
    """modality -> ModalityParts with the default tokenizer and head of each built-in modality
    (``layout``: the static tokens' layout; ``element_masks``: the spikes tokenizer's setting)."""
    parts = {}
    for name in names:
        spec = MODALITIES[name]
        if spec.element_masked:
            tokenizer = SpikesTokenizer(name, hidden, n_bins, SpikesTokenizer.Settings(element_masks=element_masks))
            parts[name] = ModalityParts(tokenizer, SpikesHead(name, hidden, n_bins), spec)
        elif spec.values == "classes":
            tokenizer = StaticTokenizer(name, hidden, n_bins, StaticTokenizer.Settings(layout=layout))
            head = ClassificationHead(name, hidden, n_bins, ClassificationHead.Settings(spec.n_classes))
            parts[name] = ModalityParts(tokenizer, head, spec)
        else:
            parts[name] = ModalityParts(BinnedTokenizer(name, hidden, n_bins), RegressionHead(name, hidden, n_bins), spec)
    return parts
