"""The plugin API: one hook per registry.

A plugin is a module (or object) exposed under the entry-point group ``neds.plugins``. It
implements any of the hooks below with ``@neds_framework.hookimpl``. Each hook is called once,
when the plugin set is loaded, with a ``register`` callable::

    register(name, factory, settings=None)

``name`` is what recipes write; ``factory`` is the thing provided (usually a class); ``settings``
is the attrs class that validates the recipe section for it (default: ``factory.Settings`` when
present, else no settings). Registering a name another plugin already took is an error naming
both. The hooks return nothing. Built-in plugins use exactly these hooks.
"""

from __future__ import annotations

import pluggy

hookspec = pluggy.HookspecMarker("neds")
hookimpl = pluggy.HookimplMarker("neds")


@hookspec
def neds_register_modalities(register):
    """Register modalities: ``register(name, spec)`` with a `neds_framework.api.ModalitySpec`.

    Called once at plugin load, before every other registration hook. The spec says what the
    modality is (neural or behaviour, per bin or per trial, counts, continuous values or classes,
    token or element masking, its metric kind and oracles); the core derives everything it does
    with the modality from it. A recipe can only use declared modalities. Registration fails,
    naming the plugin, when ``spec`` is not a ModalitySpec.
    """


@hookspec
def neds_register_data_sources(register):
    """Register data sources: things that turn session ids into `SessionData`.

    Called once at plugin load. A data source is named by ``data.source.name`` in a recipe and
    receives its validated settings; it yields one `neds_framework.data.session.SessionData`
    per session it prepares.
    """


@hookspec
def neds_register_tokenizers(register):
    """Register tokenizers: per-modality layers that turn a modality's array into tokens.

    Called once at plugin load. The recipe picks a tokenizer per modality by name; the model
    asks it how many tokens it makes and feeds it an element mask so masked inputs are hidden.
    """


@hookspec
def neds_register_maskers(register):
    """Register maskers: things that draw, per sample, which inputs are hidden and predicted.

    Called once at plugin load. A masker maps a batch to boolean masks per modality; the recipe
    names one, or several with mixing probabilities.
    """


@hookspec
def neds_register_heads(register):
    """Register heads: per-modality readouts that map hidden states to predictions and a loss.

    Called once at plugin load. The loss is computed only on masked elements.
    """


@hookspec
def neds_register_metrics(register):
    """Register metrics: functions from predictions and targets to named numbers.

    Called once at plugin load. The recipe's evaluation lists metrics by name.
    """


@hookspec
def neds_register_models(register):
    """Register models: the networks (and baselines) a recipe can train and evaluate.

    Called once at plugin load. ``model.name`` in a recipe selects one.
    """


@hookspec
def neds_register_stages(register):
    """Register run stages (``prepare``, ``train``, ``eval``, ...).

    Called once at plugin load. A stage factory is called as ``factory(context)`` when a recipe's
    ``stages`` list names it, in the order listed; ``context`` carries the resolved recipe, the
    registries and the run folder.
    """


@hookspec
def neds_register_reporters(register):
    """Register reporters: outputs an evaluation writes beside run.h5 (figures, loggers).

    Called once at plugin load. A reporter is built as ``factory(settings_or_None)`` and called
    as ``reporter(report)`` by the eval and fit stages, once per evaluation, for each name in
    ``eval.reporters`` (``fit.reporters``; default ``[figures, tensorboard]``, both built-ins registered this way),
    in order. ``report`` is a `neds_framework.api.EvalReport`: the run folder, record, per-session
    results, modality specs, summary table and recipe; a reporter may append ``(name, figure)``
    to ``report.figures`` for the reporters after it. It returns nothing.
    """


@hookspec
def neds_register_commands(register):
    """Register extra ``neds-run`` sub-commands (e.g. ``synth``).

    Called once at plugin load. The factory must provide ``add_arguments(parser)`` (an argparse
    parser to fill) and ``run(args) -> int`` (the exit code), and a one-line ``help`` attribute.
    """
