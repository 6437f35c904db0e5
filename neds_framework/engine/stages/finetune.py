"""The `finetune` stage: a pretrained run's model, grown to the store's new sessions, trained on.

The model is rebuilt from the pretrained run's record (its sessions and a checkpoint), or from a
portable weights file (`neds-run export RUN --weights FILE.safetensors`), with this
recipe's model and modalities, which must be the ones it was trained with. Every store session
the model lacks gets fresh per-session layers and a session embedding (`add_session`, which
leaves the existing sessions' outputs unchanged). ``train_only: new`` freezes everything else,
so only the new sessions' layers train; ``all`` trains the whole model. Training is the train
stage's loop (the same checkpoints, resume, validation and record), over this recipe's store.
"""

from __future__ import annotations

from pathlib import Path

import torch

from neds_framework.engine.settings import FinetuneSettings
from neds_framework.errors import NedsError

def session_parameters(model: torch.nn.Module, sessions: set[str]) -> list[str]:
    """Names of the parameters that belong to the given sessions (per-session layers, embeddings)."""
    return [name for name, _ in model.named_parameters() if sessions.intersection(name.split("."))]


def grow_pretrained(context, settings: FinetuneSettings) -> torch.nn.Module:
    """The pretrained model with layers for every store session it lacks (frozen as asked)."""
    from neds_framework.data.store import SessionStore
    from neds_framework.engine.stages.prepare import store_path
    from neds_framework.engine.calibrate import calibrate_sessions
    from neds_framework.engine.stages.train import session_features
    from neds_framework.engine.trained import open_trained
    from neds_framework.modality import modality_specs

    recipe = context.recipe
    pretrained = Path(settings.pretrained)
    trained = open_trained(pretrained, context.plugins.registries, settings.checkpoint)  # a run folder or .safetensors
    torch.manual_seed(recipe.run.seed)
    model = trained.model(context.plugins.registries, recipe)
    carried = trained.sessions
    store = SessionStore(store_path(recipe))
    features = session_features(store, list(recipe.modalities))
    new = [eid for eid in store.eids if eid not in carried]
    for eid in new:
        model.add_session(eid, features[eid])
    calibrate_sessions(model, store, new, modality_specs(recipe.modalities, context.plugins.registries))  # the carried ones keep their own
    model.carried_sessions = carried  # recorded with the run, so the finetuned model can be rebuilt
    if settings.train_only == "new":
        if not new:
            raise NedsError("finetune.train_only: new, but the pretrained model already has every session of the store")
        trainable = set(session_parameters(model, set(new)))
        for name, parameter in model.named_parameters():
            parameter.requires_grad_(name in trainable)
    print(
        f"finetune: {len(carried)} pretrained session(s) from {pretrained}, {len(new)} new; "
        f"training {'the new sessions layers only' if settings.train_only == 'new' else 'the whole model'}"
    )
    return model.train()


def run_finetune(context) -> Path:
    from neds_framework.engine.stages.train import train_model

    settings: FinetuneSettings | None = context.recipe.section("finetune")
    if settings is None:
        raise NedsError("finetune: the recipe has no 'finetune' section; it needs at least finetune.pretrained")
    settings.check()
    trainer = train_model(context, settings, grow_pretrained(context, settings))
    if trainer.world.main:
        trainer.record.meta["pretrained"] = str(Path(settings.pretrained))
        trainer.record.save()
    return trainer.record.path
