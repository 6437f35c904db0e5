"""The masks that evaluation uses (the same for every model, so results are comparable).

encoding:          hide all neural activity, show all behaviour (predict activity from behaviour)
decoding:          hide all behaviour, show the neural activity (predict behaviour from activity)
variable decoding: hide one behaviour variable only, show the activity and the other behaviours
"""

from __future__ import annotations

from neds_framework.errors import NedsError
from neds_framework.model.batch import Batch, Masks


def encoding_masks(batch: Batch) -> Masks:
    neural = batch.neural
    return {name: batch.full_mask(name, name in neural) for name in batch.values}


def decoding_masks(batch: Batch) -> Masks:
    neural = batch.neural
    return {name: batch.full_mask(name, name not in neural) for name in batch.values}


def variable_decoding_masks(batch: Batch, variable: str) -> Masks:
    neural = batch.neural
    if variable not in batch.values or variable in neural:
        behaviour = [name for name in batch.values if name not in neural]
        raise NedsError(f"cannot decode '{variable}': the batch's behaviour variables are {', '.join(behaviour) or '(none)'}")
    return {name: batch.full_mask(name, name == variable) for name in batch.values}
