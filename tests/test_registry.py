import attrs
import pytest

from neds_framework.errors import NedsError
from neds_framework.registry import REGISTRY_NAMES, Provider, Registries, Registry

A = Provider("plugin_a", "dist-a", "1.0")
B = Provider("plugin_b", "dist-b", "2.0")


def test_six_component_registries_exist():
    regs = Registries()
    for kind in ("data_sources", "tokenizers", "maskers", "heads", "metrics", "models"):
        assert regs[kind].kind == kind
    assert set(REGISTRY_NAMES) >= {"stages", "commands"}


def test_register_and_get_keeps_provider_and_settings():
    @attrs.frozen
    class Settings:
        ratio: float = 0.1

    class Temporal:
        pass

    reg = Registry("maskers")
    reg.add("temporal", Temporal, A, settings=Settings)
    entry = reg.get("temporal")
    assert entry.factory is Temporal and entry.settings is Settings and entry.provider == A
    assert "temporal" in reg and len(reg) == 1 and reg.names() == ["temporal"]


def test_settings_default_to_factory_attribute():
    class WithSettings:
        @attrs.frozen
        class Settings:
            k: int = 1

    reg = Registry("models")
    assert reg.add("m", WithSettings, A).settings is WithSettings.Settings


def test_settings_must_be_attrs():
    with pytest.raises(NedsError, match="must be an attrs class"):
        Registry("models").add("m", object, A, settings=dict)


def test_duplicate_name_names_both_providers():
    reg = Registry("maskers")
    reg.add("temporal", object, A)
    with pytest.raises(NedsError) as err:
        reg.add("temporal", object, B)
    msg = str(err.value)
    assert "plugin_a" in msg and "dist-a" in msg and "plugin_b" in msg and "dist-b" in msg
    assert "\n" not in msg


def test_unknown_name_lists_known_and_closest():
    reg = Registry("maskers")
    for name in ("temporal", "random", "causal"):
        reg.add(name, object, A)
    with pytest.raises(NedsError) as err:
        reg.get("tmporal")
    msg = str(err.value)
    assert "unknown masker 'tmporal'" in msg
    assert "did you mean 'temporal'?" in msg
    assert "causal, random, temporal" in msg


def test_unknown_name_without_close_match_has_no_guess():
    reg = Registry("metrics")
    reg.add("bits_per_spike", object, A)
    with pytest.raises(NedsError) as err:
        reg.get("zzz")
    assert "did you mean" not in str(err.value)


def test_invalid_name_and_unknown_registry():
    with pytest.raises(NedsError, match="invalid name"):
        Registry("heads").add("", object, A)
    with pytest.raises(ValueError):
        Registry("widgets")


def test_register_function_binds_provider():
    regs = Registries()
    register = regs.register_function("metrics", B)
    register("r2", object)
    assert regs.metrics.get("r2").provider == B
