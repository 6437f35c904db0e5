"""The `prepare` stage: data source -> one HDF5 store, skipped when the store is current.

The store's path comes from the recipe alone (`data.store`, or a name derived from the data
section), so later stages find it without re-running the source; whether its content is current
is decided by the hash of the full preprocessing settings, including the session list.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import attrs
from tqdm import tqdm

from neds_framework import __version__
from neds_framework.data.store import SessionStore, StoreWriter, store_is_current
from neds_framework.errors import NedsError, NedsRunError
from neds_framework.modality import check_array
from neds_framework.recipe import Recipe, make_converter


@attrs.frozen
class PrepareSettings:
    """Settings of the prepare stage (recipe section `prepare:`)."""

    force: bool = False  # rebuild even when the store is current
    progress: bool = True  # a progress bar over sessions


def store_path(recipe: Recipe) -> Path:
    """Where the recipe's prepared store lives."""
    data = _data_section(recipe)
    if data.store:
        return Path(data.store)
    section = json.dumps(make_converter(None).unstructure(data.source), sort_keys=True, default=str)
    digest = hashlib.sha256(section.encode()).hexdigest()[:12]
    return Path(recipe.run.dir) / "prepared" / f"{data.source.name}-{digest}.h5"


def _data_section(recipe: Recipe):
    if recipe.data is None:
        raise NedsError(f"{recipe.path}: data: missing; the prepare stage needs data.source (e.g. {{name: ibl, ...}})")
    return recipe.data


def make_source(context):
    spec = _data_section(context.recipe).source
    return context.plugins.registries.data_sources.get(spec.name).factory(spec.config)


def run_prepare(context) -> Path:
    from neds_framework.engine import distributed

    world = distributed.setup()
    if not world.main:  # one writer: the other ranks wait for rank 0's store
        distributed.barrier()
        return store_path(context.recipe)
    path = _prepare(context)
    distributed.barrier()
    return path


def _prepare(context) -> Path:
    settings: PrepareSettings = context.recipe.section("prepare") or PrepareSettings()
    path = store_path(context.recipe)
    if path.is_dir():  # before the source starts (it may generate sessions first)
        raise NedsError(f"data.store: {path} is a folder; give the path of the store file to write, e.g. {path / 'sessions.h5'}")
    source = make_source(context)
    eids = source.eids()
    declared = context.plugins.registries.modalities
    readers = plugin_readers(declared, context.recipe, context.recipe.data.source.name)
    full_settings = {**source.settings_for_hash(), "eids": list(eids)}
    if readers:  # the modalities other plugins read for this source: a new or updated one rebuilds the store
        full_settings["plugin_modalities"] = {name: f"{entry.provider}" for name, entry in readers.items()}
    if not settings.force and store_is_current(path, full_settings):
        print(f"prepare: {path} is current ({len(eids)} sessions); skipped")
        return path
    with StoreWriter(path, full_settings, framework_version=__version__) as writer:
        for eid in tqdm(eids, desc="prepare", unit="session", disable=not settings.progress, file=sys.stderr):
            session = add_declared_modalities(source.prepare(eid), source, context.recipe.data.source.name, readers)
            check_session(session, declared, context.recipe.data.source.name)
            writer.add(session)
    print_report(path)
    return path


def plugin_readers(declared, recipe, source_name: str) -> dict:
    """modality -> registry entry, for each modality the recipe uses whose spec says how this
    data source gets it (`ModalitySpec.sources`)."""
    return {entry.name: entry for entry in declared
            if entry.name in recipe.modalities and source_name in entry.factory.sources}


def add_declared_modalities(session, source, source_name: str, readers: dict):
    """The session with each modality of ``readers`` (`plugin_readers`) that the source did not
    produce itself; one that reads None is reported absent."""
    for entry in readers.values():
        how = entry.factory.sources[source_name]
        if entry.name in session.modalities:
            continue
        try:
            array = how.read(session, source)
        except NedsError:
            raise
        except Exception as exc:  # someone else's reader: name it and the session
            raise NedsRunError(f"{entry.provider}: modality '{entry.name}' could not be read for session {session.eid}: "
                               f"{type(exc).__name__}: {exc}; fix the plugin, or drop modalities.{entry.name} "
                               "from the recipe") from exc
        if array is None:
            session.report.setdefault("absent", {})[entry.name] = "not recorded"
        else:
            session.modalities[entry.name] = array
    return session


def check_session(session, declared, source: str) -> None:
    """Every modality a data source produced is declared by some plugin and has the declared shape
    and values (`neds_framework.modality.check_array`), before anything is written."""
    for name, array in session.modalities.items():
        if name not in declared:
            raise NedsError(f"data source '{source}' produced modality '{name}' for session {session.eid}, which no "
                            f"plugin declares ({declared.unknown_message(name)}); register its ModalitySpec "
                            "with neds_register_modalities")
        check_array(session.eid, name, declared.get(name).factory, array, session.n_trials, session.n_neurons)


def print_report(path: Path) -> None:
    """One line per session: what was kept and what was excluded or absent."""
    with SessionStore(path) as store:
        print(f"prepared {len(store.eids)} session(s) into {path}")
        print(f"  {'session':<10} {'trials':>11} {'neurons':>11}  modalities / excluded / absent / sources")
        for eid in store.eids:
            info = store.info(eid)
            rep = info.report
            excluded = ", ".join(f"{k} {v}" for k, v in rep.get("trials_excluded", {}).items() if v)
            absent = ", ".join(f"{k} ({why})" for k, why in rep.get("absent", {}).items())
            notes = "; ".join(f"{k} from {what}" for k, what in rep.get("notes", {}).items())
            print(
                f"  {eid[:8]:<10} {rep.get('trials_kept', info.n_trials):>5}/{rep.get('trials_total', '?'):<5} "
                f"{rep.get('neurons_kept', info.n_neurons):>5}/{rep.get('neurons_total', '?'):<5}  "
                f"{','.join(info.modalities)} / {excluded or '-'} / {absent or '-'}" + (f" / {notes}" if notes else "")
            )
