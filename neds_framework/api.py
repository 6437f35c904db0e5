"""Everything a plugin author needs, from one module: ``from neds_framework.api import ...``.

Hooks (`hookimpl`; the hook specifications are in `neds_framework.hookspecs`), the modality
declaration (`ModalitySpec`), the interface of every registry (`Tokenizer`, `Head`, `Masker`,
`DataSource`, `Metric`, `Command`; models, stages and reporters are plain callables), and the
data they exchange (`Batch`, `Masks`, `Tokens`, `SessionData`, `BatchKey`, `StoreBatches`,
`EvalReport`), and what exporters and reporters read a finished run with (`RunRecord`,
`read_table`, `summarise`, `open_trained`, `run_recipe_of`, `SessionStore`, `store_path`, `collect_predictions`,
`TaskOptions`, `EvalSettings`, `modality_specs`, `resolve_amp`, `autocast_factory`,
`export_run_weights`). Names here are
the public API: they keep their meaning across minor versions, where deeper modules may move.
"""

from neds_framework import __version__ as framework_version
from neds_framework.atomic import atomic_path, atomic_write_text
from neds_framework.contracts import Command, DataSource, Metric
from neds_framework.data.batches import BatchKey, StoreBatches
from neds_framework.data.session import SessionData
from neds_framework.data.store import SessionStore
from neds_framework.engine.eval_tables import summarise
from neds_framework.engine.eval_tasks import TaskOptions
from neds_framework.engine.evaluate import collect_predictions
from neds_framework.engine.precision import autocast_factory, resolve_amp
from neds_framework.engine.record import RunRecord, read_table
from neds_framework.engine.reporting import EvalReport
from neds_framework.engine.settings import EvalSettings
from neds_framework.engine.stages.prepare import store_path
from neds_framework.engine.trained import Trained, export_run_weights, open_trained, run_recipe_of
from neds_framework.errors import NedsError, NedsRunError
from neds_framework.hookspecs import hookimpl
from neds_framework.modality import ModalitySpec, modality_specs
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
    "EvalSettings",
    "Head",
    "Masker",
    "Masks",
    "Metric",
    "ModalityParts",
    "ModalitySpec",
    "ModelOutput",
    "NedsError",
    "NedsRunError",
    "RunRecord",
    "SessionData",
    "SessionLayers",
    "SessionStore",
    "SettingsError",
    "StoreBatches",
    "TRIAL_TIME",
    "TaskOptions",
    "Tokenizer",
    "Tokens",
    "Trained",
    "atomic_path",
    "atomic_write_text",
    "autocast_factory",
    "collect_predictions",
    "export_run_weights",
    "framework_version",
    "full_mask",
    "get_plugins",
    "hookimpl",
    "is_static",
    "mask_from_time",
    "modality_specs",
    "n_features",
    "nanmean_or_nan",
    "open_trained",
    "read_table",
    "resolve_amp",
    "run_recipe_of",
    "store_path",
    "summarise",
    "structure_settings",
]
