"""Everything a plugin author needs, from one module: ``from neds_framework.api import ...``.

Hooks (`hookimpl`; the hook specifications are in `neds_framework.hookspecs`), the modality
declaration (`ModalitySpec`), the interface of every registry (`Tokenizer`, `Head`, `Masker`,
`DataSource`, `Metric`, `Command`; models, stages and reporters are plain callables), and the
data they exchange (`Batch`, `Masks`, `Tokens`, `SessionData`, `BatchKey`, `StoreBatches`,
`EvalReport`). Names here are
the public API: they keep their meaning across minor versions, where deeper modules may move.
"""

from neds_framework.atomic import atomic_path, atomic_write_text
from neds_framework.contracts import Command, DataSource, Metric
from neds_framework.data.batches import BatchKey, StoreBatches
from neds_framework.data.session import SessionData
from neds_framework.engine.reporting import EvalReport
from neds_framework.errors import NedsError, NedsRunError
from neds_framework.hookspecs import hookimpl
from neds_framework.modality import ModalitySpec
from neds_framework.model.batch import Batch, Masks, full_mask, is_static, mask_from_time, n_features
from neds_framework.model.interfaces import TRIAL_TIME, Head, Masker, ModalityParts, ModelOutput, Tokenizer, Tokens
from neds_framework.model.nn.session_layers import SessionLayers
from neds_framework.plugins import get_plugins
from neds_framework.recipe import SettingsError, structure_settings
from neds_framework.stats import nanmean_or_nan

__all__ = [
    "Batch",
    "BatchKey",
    "Command",
    "DataSource",
    "EvalReport",
    "Head",
    "Masker",
    "Masks",
    "Metric",
    "ModalityParts",
    "ModalitySpec",
    "ModelOutput",
    "NedsError",
    "NedsRunError",
    "SessionData",
    "SessionLayers",
    "SettingsError",
    "StoreBatches",
    "TRIAL_TIME",
    "Tokenizer",
    "Tokens",
    "atomic_path",
    "atomic_write_text",
    "full_mask",
    "get_plugins",
    "hookimpl",
    "is_static",
    "mask_from_time",
    "n_features",
    "nanmean_or_nan",
    "structure_settings",
]
