from __future__ import annotations

import dataclasses
import importlib.util
from types import ModuleType

import pytest

from aios_instance.errors import ConfigError
from aios_instance.settings import VARIABLES, Settings
from tests.support import ROOT


def test_defaults_without_environment() -> None:
    s = Settings.from_env({})
    assert (s.block_id, s.mgmt_port, s.metrics_port) == ("block", 18001, 18000)
    assert s.redis_url == "redis://localhost:6379/0"
    assert s.instance_id  # hostname-pid
    assert not s.redis_configured and not s.block_id_configured


def test_existing_variables_are_read() -> None:
    s = Settings.from_env(
        {
            "BLOCK_ID": "b1",
            "INSTANCE_ID": "i1",
            "REDIS_HOST": "redis.svc",
            "REDIS_PORT": "6380",
            "REDIS_DB": "2",
            "REDIS_PASSWORD": "p@ss",
            "MGMT_PORT": "9001",
            "CUSTOM_INIT_DATA": '{"a": 1}',
            "AIOS_CLAIM_BATCH": "128",
            "AIOS_VALIDATE_JSON": "false",
        }
    )
    assert (s.block_id, s.instance_id, s.mgmt_port, s.claim_batch) == ("b1", "i1", 9001, 128)
    assert s.redis_url == "redis://:p%40ss@redis.svc:6380/2"
    assert s.custom_init_data == {"a": 1} and s.validate_json is False
    assert s.redis_configured and s.block_id_configured
    assert s.as_dict()["redis_password"] == "***"


@pytest.mark.parametrize(
    ("env", "needle"),
    [
        ({"MGMT_PORT": "http"}, "MGMT_PORT"),
        ({"REDIS_PORT": "70000"}, "REDIS_PORT"),
        ({"AIOS_CLAIM_BATCH": "0"}, "AIOS_CLAIM_BATCH"),
        ({"AIOS_LEASE_TTL_S": "-1"}, "AIOS_LEASE_TTL_S"),
        ({"AIOS_LEASE_TTL_S": "inf"}, "AIOS_LEASE_TTL_S"),
        ({"AIOS_DRAIN_TIMEOUT_S": "nan"}, "AIOS_DRAIN_TIMEOUT_S"),
        ({"AIOS_REDIS_URL": "localhost:6379"}, "AIOS_REDIS_URL.*redis://"),
        ({"CUSTOM_INIT_DATA": "[1]"}, "CUSTOM_INIT_DATA"),
        ({"AIOS_VALIDATE_JSON": "maybe"}, "AIOS_VALIDATE_JSON"),
        ({"AIOS_CLAIM_BATCHES": "3"}, "unknown setting AIOS_CLAIM_BATCHES"),
        ({"METRICS_REDIS_HOST": "metrics:port"}, "METRICS_REDIS_HOST.*not a Redis address"),
        ({"BLOCK_ID": "../secret"}, "BLOCK_ID='../secret'.*letters, digits"),
        ({"BLOCK_ID": "a b"}, "BLOCK_ID"),
        ({"AIOS_REDIS_URL": "redis://localhost:99999"}, "AIOS_REDIS_URL.*1-65535"),
    ],
)
def test_invalid_values_name_the_variable(env: dict[str, str], needle: str) -> None:
    with pytest.raises(ConfigError, match=needle):
        Settings.from_env(env)


def test_overrides_win_and_are_marked_configured() -> None:
    s = Settings.from_env({"BLOCK_ID": "env"}, block_id="cli", redis_url_override="redis://h:1/0")
    assert s.block_id == "cli" and s.redis_url == "redis://h:1/0" and s.redis_configured
    t = Settings.from_env({}).with_overrides(redis_url_override="redis://x:2/0")
    assert t.redis_configured and t.redis_url == "redis://x:2/0"


def generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gen", ROOT / "scripts" / "gen_settings_doc.py")
    assert spec and spec.loader
    gen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen)
    return gen


def test_settings_page_is_current() -> None:
    page = (ROOT / "docs" / "settings.md").read_text(encoding="utf-8")
    assert generator().render(page) == page, "run python scripts/gen_settings_doc.py"
    assert all(f"| `{v.env}` |" in page for v in VARIABLES)


def test_the_table_is_the_settings_fields() -> None:
    """Every field but ``configured`` is a row, with the field's own default."""
    by_field = {v.field: v for v in VARIABLES}
    own = [f for f in dataclasses.fields(Settings) if f.name != "configured"]
    assert [f.name for f in own] == list(by_field)
    assert all(by_field[f.name].default == f.default for f in own)
    assert len({v.env for v in VARIABLES}) == len(VARIABLES)
    assert all(v.doc.endswith(".") for v in VARIABLES)


def test_the_generator_fills_only_the_marked_table() -> None:
    gen = generator()
    page = f"# Title\n\nprose\n{gen.BEGIN}\nold rows\n{gen.END}\nmore prose\n"
    rendered = gen.render(page)
    assert rendered.startswith("# Title\n\nprose\n") and rendered.endswith("\nmore prose\n")
    assert "old rows" not in rendered
    assert "| `AIOS_CLAIM_BATCH` | `64` | Packets claimed per Redis round trip. |" in rendered
    assert "| `INSTANCE_ID` | (unset) |" in rendered
    assert gen.render(rendered) == rendered


@pytest.mark.parametrize("name", ["CUSTOM_INIT_DATA", "AIOS_REDIS_URL", "MGMT_PORT", "BLOCK_ID"])
def test_empty_values_count_as_unset(name: str) -> None:
    assert Settings.from_env({name: ""}) == Settings.from_env({})
    assert name not in Settings.from_env({name: ""}).configured


def test_settings_are_a_frozen_dataclass_taking_keywords() -> None:
    s = Settings(block_id="kw", mgmt_port=0, instance_id="i")
    assert (s.block_id, s.mgmt_port, s.claim_batch) == ("kw", 0, 64)
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.block_id = "other"  # type: ignore[misc]
    masked = Settings(redis_url_override="redis://:secret@h:1/0", instance_id="i").as_dict()
    assert masked["redis_url_override"] == "redis://:***@h:1/0"


def test_a_block_id_given_directly_is_checked_too() -> None:
    with pytest.raises(ConfigError, match="invalid BLOCK_ID='x/y'"):
        Settings(block_id="x/y")
    assert Settings(block_id="det-1.v2:gpu_0").block_id == "det-1.v2:gpu_0"
