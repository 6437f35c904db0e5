import textwrap
from pathlib import Path

import pytest
import yaml

from neds_framework.errors import NedsError
from neds_framework.recipe import dump_recipe, load_recipe, read_recipe
from tests.helpers import FakeMasker, FakeTrainSettings, fake_registries


def write(path, text):
    path.write_text(textwrap.dedent(text))
    return path


@pytest.fixture
def regs():
    return fake_registries()


@pytest.fixture
def base(tmp_path):
    write(
        tmp_path / "base.yaml",
        """
        stages: [prepare, train]
        run: {dir: runs, seed: 3}
        masker: {name: temporal, ratio: 0.2}
        metrics: [bits_per_spike]
        train:
          epochs: 5
          optimizer: {lr: 0.01}
        """,
    )
    return tmp_path / "base.yaml"


def error_of(path, regs, overrides=None):
    with pytest.raises(NedsError) as err:
        load_recipe(path, overrides, regs)
    msg = str(err.value)
    assert "\n" not in msg and "Traceback" not in msg
    return msg


def test_plugin_and_stage_sections_are_structured_by_their_classes(base, regs):
    recipe = load_recipe(base, registries=regs)
    assert recipe.stages == ("prepare", "train")
    assert recipe.run.seed == 3
    assert recipe.masker.name == "temporal"
    assert recipe.masker.config == FakeMasker.Settings(ratio=0.2)
    assert recipe.metrics[0].name == "bits_per_spike" and recipe.metrics[0].config is None
    assert recipe.section("train") == FakeTrainSettings(epochs=5, optimizer=FakeTrainSettings().optimizer.__class__(lr=0.01))


def test_extends_merges_recursively_and_child_wins(base, regs, tmp_path):
    (tmp_path / "sub").mkdir()
    child = write(
        tmp_path / "sub" / "child.yaml",
        """
        extends: ../base.yaml
        train:
          optimizer: {betas: [0.8, 0.9]}
        masker: random
        """,
    )
    recipe = load_recipe(child, registries=regs)
    train = recipe.section("train")
    assert train.epochs == 5  # from base
    assert train.optimizer.lr == 0.01  # from base, merged into
    assert train.optimizer.betas == (0.8, 0.9)  # from child
    assert recipe.masker.name == "random" and recipe.masker.config == FakeMasker.Settings()  # replaced whole


def test_extends_chain_and_list(tmp_path, regs):
    write(tmp_path / "a.yaml", "stages: [prepare]\nrun: {seed: 1}\n")
    write(tmp_path / "b.yaml", "run: {dir: elsewhere}\n")
    write(tmp_path / "c.yaml", "extends: [a.yaml, b.yaml]\nrun: {name: mine}\n")
    recipe = load_recipe(tmp_path / "c.yaml", registries=regs)
    assert (recipe.run.seed, recipe.run.dir, recipe.run.name) == (1, "elsewhere", "mine")


def test_set_overrides_parse_yaml_values(base, regs):
    recipe = load_recipe(
        base,
        ["train.optimizer.lr=1e-4", "run.seed=7", "masker.ratio=0.5", "stages=[prepare]", "train.amp=true"],
        regs,
    )
    assert recipe.section("train").optimizer.lr == 1e-4
    assert recipe.run.seed == 7 and recipe.masker.config.ratio == 0.5
    assert recipe.stages == ("prepare",) and recipe.section("train").amp is True


def test_dump_round_trips(base, regs, tmp_path):
    recipe = load_recipe(base, ["masker.expand_prob=0.1"], regs)
    text = dump_recipe(recipe)
    dumped = yaml.safe_load(text)
    assert dumped["train"]["optimizer"]["betas"] == [0.9, 0.999]  # defaults filled in
    again = load_recipe(write(tmp_path / "dumped.yaml", text), registries=regs)
    assert dump_recipe(again) == text
    assert again.masker == recipe.masker and again.sections == recipe.sections


@pytest.mark.parametrize(
    "override, expected",
    [
        ("train.optimizer.lr=fast", "train.optimizer.lr: expected float, got 'fast'"),
        ("train.epochs=2.5", "train.epochs: expected int, got 2.5"),
        ("train.amp=maybe", "train.amp: expected bool (true or false), got 'maybe'"),
        ("train.optimizer.lrr=1", "train.optimizer.lrr: unknown key; did you mean 'lr'?"),
        ("masker.ratoi=1", "masker.ratoi: unknown key; did you mean 'ratio'?"),
        ("masker.name=tmporal", "masker.name: unknown masker 'tmporal'; did you mean 'temporal'?"),
        ("metrics=[bits_per_spike, bps]", "metrics[1].name: unknown metric 'bps'"),
        ("stages=[prepare, trian]", "stages[1]: unknown stage 'trian'; did you mean 'train'?"),
        ("trian={epochs: 1}", "trian: unknown key; did you mean 'train'?"),
        ("run.seed=[1]", "run.seed: expected int, got [1]"),
    ],
)
def test_bad_values_name_file_and_key_path(base, regs, override, expected):
    msg = error_of(base, regs, [override])
    assert expected in msg
    assert msg.startswith("--set") or msg.startswith(str(base))


def test_error_names_the_file_that_set_the_key(base, regs, tmp_path):
    child = write(tmp_path / "child.yaml", "extends: base.yaml\nrun: {seed: x}\n")
    assert error_of(child, regs).startswith(f"{child}: run.seed: expected int, got 'x'")
    # A key only the base set is reported against the base file.
    write(tmp_path / "base.yaml", (tmp_path / "base.yaml").read_text() + "modalities: 3\n")
    write(child, "extends: base.yaml\n")
    assert error_of(child, regs).startswith(f"{tmp_path / 'base.yaml'}: modalities:")


def test_set_errors_name_the_override(base, regs):
    assert error_of(base, regs, ["train.epochs=x"]).startswith("--set train.epochs: train.epochs: expected int")


def test_missing_extends_file(tmp_path, regs):
    rec = write(tmp_path / "r.yaml", "extends: nope.yaml\nstages: [prepare]\n")
    msg = error_of(rec, regs)
    assert str(rec) in msg and "extends" in msg and "nope.yaml" in msg and "not found" in msg


def test_extends_cycle(tmp_path, regs):
    write(tmp_path / "a.yaml", "extends: b.yaml\nstages: [prepare]\n")
    write(tmp_path / "b.yaml", "extends: a.yaml\n")
    assert "cycle" in error_of(tmp_path / "a.yaml", regs)


def test_yaml_syntax_error_has_line_and_column(tmp_path, regs):
    rec = write(tmp_path / "bad.yaml", "stages: [prepare\nrun: {seed: 1}\n")
    msg = error_of(rec, regs)
    assert msg.startswith(f"{rec}: line ") and "YAML syntax error" in msg


def test_missing_recipe_file_and_non_mapping(tmp_path, regs):
    assert "not found" in error_of(tmp_path / "missing.yaml", regs)
    assert "must be a mapping" in error_of(write(tmp_path / "list.yaml", "- a\n- b\n"), regs)


def test_missing_stages_and_missing_component_name(tmp_path, regs):
    assert "stages: missing required key" in error_of(write(tmp_path / "r.yaml", "run: {seed: 1}\n"), regs)
    rec = write(tmp_path / "m.yaml", "stages: [prepare]\nmasker: {ratio: 0.1}\n")
    assert "masker: missing key 'name'" in error_of(rec, regs)


def test_bad_set_syntax(base, regs):
    assert "expected key.path=value" in error_of(base, regs, ["train.epochs"])
    assert "not valid YAML" in error_of(base, regs, ["train.epochs=[1"])


def test_plugin_without_settings_rejects_settings(base, regs):
    assert "takes no settings" in error_of(base, regs, ["metrics=[{name: bits_per_spike, x: 1}]"])


def test_read_recipe_records_origins(base, tmp_path):
    child = write(tmp_path / "child.yaml", "extends: base.yaml\ntrain: {epochs: 9}\n")
    raw = read_recipe(child)
    assert raw.origin(("train", "epochs")) == str(child)
    assert raw.origin(("train", "optimizer", "lr")) == str(base)
    assert raw.data["train"] == {"epochs": 9, "optimizer": {"lr": 0.01}}


def test_without_registries_only_the_core_schema_is_known(base, tmp_path):
    core = write(tmp_path / "core.yaml", "stages: [prepare]\nmasker: {name: anything, ratio: 1}\n")
    recipe = load_recipe(core, registries=None)
    assert recipe.masker.name == "anything" and recipe.masker.config == {"ratio": 1}
    with pytest.raises(NedsError, match="train: unknown key"):
        load_recipe(base, registries=None)  # stage sections need the stage registry


RECIPES = sorted((Path(__file__).resolve().parents[1] / "recipes").glob("*.yaml"))


@pytest.mark.parametrize("recipe", RECIPES, ids=[p.stem for p in RECIPES])
def test_every_shipped_recipe_validates(recipe):
    from neds_framework.plugins import get_plugins, reset_plugins

    reset_plugins()
    loaded = load_recipe(recipe, registries=get_plugins().registries)
    assert loaded.stages and loaded.model is not None
    for stage in loaded.stages:
        if stage != "prepare":
            assert stage in ("train", "finetune", "eval", "fit", "search")


def test_mm_large_names_the_74_reference_sessions_and_runs_generated_with_the_overlay():
    from neds_framework.plugins import get_plugins

    root = Path(__file__).resolve().parents[1]
    registries = get_plugins().registries
    large = load_recipe(root / "recipes" / "mm_large.yaml", registries=registries)
    source = large.data.source.config
    assert source.one.mode == "remote" and large.model.config.layers == 22
    eids = [line for line in (root / source.eids_file).read_text().splitlines() if line and not line.startswith("#")]
    assert len(eids) == 74 and eids[0] == "754b74d5-7a06-4004-ae0c-72a10b6ed2e6"
    generated = load_recipe(root / "recipes" / "mm_large.yaml", registries=registries,
                            overlays=[root / "recipes" / "overlays" / "generated.yaml"])
    g = generated.data.source.config
    assert g.one.mode == "local" and g.eids_file == "" and g.synthesize.sessions == 74
    assert generated.model.config.layers == 22 and generated.run.name == "mm_large_generated"


def test_overlay_files_merge_over_the_recipe_and_errors_name_them(tmp_path):
    base = tmp_path / "base.yaml"
    base.write_text("stages: [prepare]\nrun: {seed: 1, name: a}\n")
    overlay = tmp_path / "over.yaml"
    overlay.write_text("run: {seed: 'x'}\n")
    with pytest.raises(NedsError, match="over.yaml: run.seed"):
        load_recipe(base, registries=fake_registries(), overlays=[overlay])
    overlay.write_text("run: {seed: 5}\n")
    recipe = load_recipe(base, ["run.seed=6"], registries=fake_registries(), overlays=[overlay])
    assert recipe.run.seed == 6 and recipe.run.name == "a"
    recipe = load_recipe(base, registries=fake_registries(), overlays=[overlay])
    assert recipe.run.seed == 5
    with pytest.raises(NedsError, match="--overlay: file"):
        load_recipe(base, registries=fake_registries(), overlays=[tmp_path / "nope.yaml"])


def test_a_section_naming_another_plugin_replaces_the_base_section(tmp_path):
    (tmp_path / "base.yaml").write_text("stages: [prepare]\nmasker: {name: temporal, ratio: 0.5, expand_prob: 0.1}\n")
    top = tmp_path / "top.yaml"
    top.write_text("extends: base.yaml\nmasker: {name: random}\n")
    recipe = load_recipe(top, registries=fake_registries())
    assert recipe.masker.name == "random" and recipe.masker.config.ratio == 0.3  # the base's settings did not carry over
    top.write_text("extends: base.yaml\nmasker: {ratio: 0.2}\n")
    recipe = load_recipe(top, registries=fake_registries())
    assert recipe.masker.name == "temporal" and recipe.masker.config.ratio == 0.2 and recipe.masker.config.expand_prob == 0.1


@pytest.mark.parametrize(
    "override, expected",
    [
        ("modalities.choice.head={name: classification, n_classes: 2, pool: max}",
         "modalities.choice.head.pool: 'pool' must be in ('mean', 'weighted') (got 'max')"),
        ("modalities.spikes.head={name: spikes, start_rows: ones}",
         "modalities.spikes.head.start_rows: 'start_rows' must be in ('random', 'zero') (got 'ones')"),
    ],
)
def test_a_plugin_settings_choice_error_names_the_key_and_the_choices(override, expected):
    from neds_framework.plugins import get_plugins

    recipe = Path(__file__).resolve().parents[1] / "recipes" / "quickstart.yaml"
    msg = error_of(recipe, get_plugins().registries, [override])
    assert expected in msg and "Attribute(" not in msg


@pytest.mark.parametrize(
    "child, check",
    [
        ("run: {name: other}", lambda r: (r.run.name, r.run.dir, r.run.seed) == ("other", "elsewhere", 3)),
        ("data: {store: s.h5}", lambda r: r.data.store == "s.h5" and r.data.source.name == "ibl"),
        ("train: {epochs: 9}", lambda r: r.section("train").epochs == 9 and r.section("train").optimizer.lr == 0.01),
    ],
)
def test_non_plugin_sections_merge_key_by_key(base, regs, tmp_path, child, check):
    """A child's `run: {name: X}` (or `--set run.name=X`) keeps the base's run folder and seed; data
    and stage sections merge the same way. Only a plugin section naming another plugin is replaced."""
    text = base.read_text().replace("run: {dir: runs, seed: 3}", "run: {dir: elsewhere, seed: 3, name: base}")
    base.write_text(text + "data: {source: {name: ibl}}\n")
    path = write(tmp_path / "child.yaml", f"extends: base.yaml\n{child}\n")
    assert check(load_recipe(path, registries=regs))
    assert check(load_recipe(base, [child.replace(": {", ".", 1).replace("}", "").replace(": ", "=", 1)], regs))


def test_yaml_1_1_words_stay_strings_so_amp_off_reads_as_written(tmp_path):
    """PyYAML's YAML 1.1 reads off/on/yes/no as booleans; recipes use YAML 1.2 booleans
    (true/false only), so the README's `amp: off` reaches the string setting as "off"."""
    from neds_framework.plugins import get_plugins, reset_plugins

    reset_plugins()
    regs = get_plugins().registries
    quickstart = Path(__file__).resolve().parents[1] / "recipes" / "quickstart.yaml"
    child = write(tmp_path / "fp32.yaml", f"extends: {quickstart}\ntrain: {{amp: off}}\neval: {{amp: off}}\n")
    loaded = load_recipe(child, registries=regs)
    assert loaded.section("train").amp == "off" and loaded.section("eval").amp == "off"
    assert load_recipe(quickstart, ["train.amp=off", "finetune.amp=off"], regs).section("train").amp == "off"
    assert yaml.safe_load(dump_recipe(loaded))["train"]["amp"] == "off"  # dumped quoted for YAML 1.1 readers
    # true/false are still booleans; a YAML 1.1 boolean word where a bool is expected is refused by name.
    assert load_recipe(quickstart, ["train.val_metrics=true"], regs).section("train").val_metrics is True
    with pytest.raises(NedsError, match=r"train\.val_metrics: expected bool \(true or false\), got .yes."):
        load_recipe(quickstart, ["train.val_metrics=yes"], regs)
