"""Config loading (§2 of the interface): environment substitution, strict validation with YAML
paths and lines, every problem reported at once, defaults, zero-config and the file search."""

from __future__ import annotations

from pathlib import Path

import pydantic
import pytest

from lockgate.config import (
    Config,
    ConfigError,
    ConfigProblem,
    default_config,
    find_config_path,
    load_config,
    parse_config,
)

PROVIDERS = """\
providers:
  oai: {type: openai, api_key: sk-test-0123456789}
"""

MODEL = PROVIDERS + """\
models:
  gpt:
    targets: [{provider: oai, model: gpt-4o-mini}]
"""


def problems(text: str, env: dict[str, str] | None = None) -> list[ConfigProblem]:
    with pytest.raises(ConfigError) as caught:
        parse_config(text, env or {})
    return caught.value.problems


def the_problem(text: str, env: dict[str, str] | None = None) -> ConfigProblem:
    found = problems(text, env)
    assert len(found) == 1, found
    return found[0]


# --- environment substitution ----------------------------------------------------------------


def test_variables_are_replaced_anywhere_in_a_string() -> None:
    config = parse_config(
        "storage: sqlite:///${DATA_DIR}/gw.db\n"
        "server: {master_key: '${MK}'}\n"
        "providers:\n"
        "  oai: {type: openai, api_key: '${KEY}', base_url: 'http://${HOST}:${PORT}/v1',\n"
        "        headers: {x-team: 'team-${TEAM}'}}\n",
        {"DATA_DIR": "/var/lib", "MK": "master-secret", "KEY": "sk-1", "HOST": "vllm",
         "PORT": "8000", "TEAM": "blue"},
    )
    assert config.storage == "sqlite:////var/lib/gw.db"
    assert config.server.master_key == "master-secret"
    oai = config.providers["oai"]
    assert (oai.api_key, oai.base_url) == ("sk-1", "http://vllm:8000/v1")
    assert oai.headers == {"x-team": "team-blue"}


def test_a_default_replaces_an_unset_or_empty_variable_as_in_the_shell() -> None:
    text = "server: {master_key: '${MK:-fallback}'}\nstorage: '${DB:-}sqlite:///x.db'\n"
    assert parse_config(text, {}).server.master_key == "fallback"
    assert parse_config(text, {"MK": ""}).server.master_key == "fallback"
    assert parse_config(text, {"MK": "set"}).server.master_key == "set"
    assert parse_config(text, {}).storage == "sqlite:///x.db"


def test_a_variable_set_but_empty_without_default_is_empty_not_an_error() -> None:
    assert parse_config("storage: 'sqlite:///${SUFFIX}x.db'\n", {"SUFFIX": ""}).storage == "sqlite:///x.db"


def test_substituted_numbers_and_items_in_lists_are_typed_after_substitution() -> None:
    config = parse_config(
        "server: {drain_s: '${DRAIN:-5}', cors_origins: ['${ORIGIN}']}\n" + MODEL +
        "    retries: '${RETRIES}'\n",
        {"ORIGIN": "https://app.example", "RETRIES": "4"},
    )
    assert config.server.drain_s == 5.0
    assert config.server.cors_origins == ("https://app.example",)
    assert config.models["gpt"].retries == 4


def test_a_value_from_the_environment_is_not_substituted_again() -> None:
    config = parse_config("server: {master_key: '${MK}'}\n", {"MK": "${OTHER}", "OTHER": "no"})
    assert config.server.master_key == "${OTHER}"


def test_a_missing_variable_is_an_error_naming_it_with_path_and_line() -> None:
    problem = the_problem(
        "server:\n"
        "  drain_s: 5\n"
        "  master_key: ${LOCKGATE_MASTER_KEY}\n"
    )
    assert problem.path == "server.master_key"
    assert problem.line == 3
    assert "LOCKGATE_MASTER_KEY" in problem.message
    assert str(problem) == \
        "server.master_key (line 3): environment variable LOCKGATE_MASTER_KEY is not set"


def test_every_missing_variable_is_reported() -> None:
    found = problems(
        "providers:\n"
        "  oai:\n"
        "    type: openai\n"
        "    api_key: ${OPENAI_KEY_X}\n"
        "    base_url: http://${UPSTREAM_HOST}/v1\n"
    )
    assert [(p.path, p.line) for p in found] == \
        [("providers.oai.api_key", 4), ("providers.oai.base_url", 5)]
    assert "OPENAI_KEY_X" in found[0].message and "UPSTREAM_HOST" in found[1].message


def test_a_missing_variable_in_a_list_item_names_the_index() -> None:
    problem = the_problem("keys:\n  - name: ci\n    key: ${CI_KEY}\n")
    assert (problem.path, problem.line) == ("keys.0.key", 3)


# --- unknown keys ------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "path", "line", "meant"), [
    ("provders: {}\n", "provders", 1, "providers"),
    ("server:\n  drain: 5\n", "server.drain", 2, "drain_s"),
    ("providers:\n  oai:\n    type: openai\n    api-key: x\n", "providers.oai.api-key", 4, "api_key"),
    (MODEL + "    retry: 3\n", "models.gpt.retry", 6, "retries"),
    (PROVIDERS + "models:\n  gpt:\n    targets:\n      - provider: oai\n        wieght: 2\n",
     "models.gpt.targets.0.wieght", 7, "weight"),
    (MODEL + "keys:\n  - name: ci\n    key: lg-ci-key-0123456789\n    rmp: 60\n", "keys.0.rmp", 9, "rpm"),
    ("teams:\n  - {name: research, budget: 5}\n", "teams.0.budget", 2, "budget_usd"),
    (MODEL + "    price: {input_usd: 1}\n", "models.gpt.price.input_usd", 6, "input_per_mtok_usd"),
    ("server:\n  zzz: 1\n", "server.zzz", 2, None),
])
def test_unknown_keys_are_rejected_with_path_line_and_the_key_meant(
        text: str, path: str, line: int, meant: str | None) -> None:
    problem = the_problem(text)
    hint = f" (did you mean {meant!r}?)" if meant else ""
    assert (problem.path, problem.line, problem.message) == (path, line, f"unknown key{hint}")


# --- types and ranges --------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "path"), [
    ("server: {max_body_bytes: lots}\n", "server.max_body_bytes"),
    ("server: {expose_route_header: sometimes}\n", "server.expose_route_header"),
    ("server: {cors_origins: 5}\n", "server.cors_origins"),
    ("providers: [openai]\n", "providers"),
    ("providers:\n  oai: {type: openai, headers: [a, b]}\n", "providers.oai.headers"),
    (MODEL + "    retries: twice\n", "models.gpt.retries"),
    (MODEL + "    strategy: random\n", "models.gpt.strategy"),
    (MODEL + "teams:\n  - {name: t, budget_period: weekly}\n", "teams.0.budget_period"),
    ("keys:\n  - {name: ci}\n", "keys.0.key"),
    ("keys:\n  - {name: ci, key: short}\n", "keys.0.key"),
])
def test_wrong_types_and_values_are_rejected_at_their_path(text: str, path: str) -> None:
    assert the_problem(text).path == path


@pytest.mark.parametrize(("text", "path"), [
    ("server: {max_body_bytes: -1}\n", "server.max_body_bytes"),
    ("server: {drain_s: -1}\n", "server.drain_s"),
    ("providers:\n  oai: {type: openai, timeout_s: -5}\n", "providers.oai.timeout_s"),
    (MODEL + "    retries: -1\n", "models.gpt.retries"),
    (MODEL + "    timeout_s: 0\n", "models.gpt.timeout_s"),
    (MODEL + "    price: {output_per_mtok_usd: -2}\n", "models.gpt.price.output_per_mtok_usd"),
    (PROVIDERS + "models:\n  gpt: {targets: [{provider: oai, weight: -1}]}\n",
     "models.gpt.targets.0.weight"),
    ("keys:\n  - {name: ci, key: lg-ci-key-0123456789, rpm: -5}\n", "keys.0.rpm"),
    ("keys:\n  - {name: ci, key: lg-ci-key-0123456789, budget_usd: -1}\n", "keys.0.budget_usd"),
    ("teams:\n  - {name: t, tpm: 0}\n", "teams.0.tpm"),
    ("server: {responses_ttl_s: 0}\n", "server.responses_ttl_s"),
    ("server: {max_in_flight: -1}\n", "server.max_in_flight"),
    (MODEL + "    health: {cooldown_s: 0}\n", "models.gpt.health.cooldown_s"),
    (MODEL + "    health: {consecutive_failures: -1}\n", "models.gpt.health.consecutive_failures"),
    (MODEL + "    health: {max_error_rate: 0}\n", "models.gpt.health.max_error_rate"),
    (MODEL + "    hedge_after_ms: -5\n", "models.gpt.hedge_after_ms"),
])
def test_negative_values_are_rejected(text: str, path: str) -> None:
    problem = the_problem(text)
    assert problem.path == path
    assert "greater than" in problem.message


@pytest.mark.parametrize("key", ["too-short", "x" * 44, "Q0FGRUJBQkUtdGVzdC1rZXktMzItYnl0ZXM="])
def test_the_encryption_key_must_be_32_bytes_of_url_safe_base64(key: str) -> None:
    problem = the_problem("server: {encryption_key: ${KEY}}\n".replace("${KEY}", f'"{key}"'))
    assert problem.path == "server.encryption_key"
    assert "32 random bytes in url-safe base64" in problem.message
    assert key not in problem.message  # a secret is never repeated
    good = "Q0FGRUJBQkUtdGVzdC1rZXktMzItYnl0ZXMtbG9uZyE="
    assert parse_config(f'server: {{encryption_key: "{good}"}}\n', {}).server.encryption_key == good


TWO = PROVIDERS + """\
models:
  chat:
    targets: [{provider: oai, model: gpt-4o}, {provider: oai, model: gpt-4o-mini}]
"""


@pytest.mark.parametrize("strategy", ["weighted", "ordered", "least-latency", "least-cost"])
def test_every_strategy_the_interface_names_is_accepted(strategy: str) -> None:
    assert parse_config(TWO + f"    strategy: {strategy}\n", {}).models["chat"].strategy == strategy


def test_health_and_hedging_settings() -> None:
    model = parse_config(TWO + "    health: {consecutive_failures: 5, cooldown_s: 10, "
                         "max_error_rate: 0.5, window_s: 30, min_requests: 8, slow_ms: 2000}\n"
                         "    hedge_after_ms: 300\n", {}).models["chat"]
    assert (model.health.consecutive_failures, model.health.cooldown_s, model.health.slow_ms,
            model.hedge_after_ms) == (5, 10, 2000, 300)
    default = parse_config(TWO, {}).models["chat"]
    assert (default.health.consecutive_failures, default.health.cooldown_s,
            default.hedge_after_ms) == (3, 30, 0)
    rate = the_problem(TWO + "    health: {max_error_rate: 1.5}\n")
    assert rate.path == "models.chat.health.max_error_rate"
    assert the_problem(TWO + "    health: {cooldown: 5}\n").path == "models.chat.health.cooldown"


def test_hedging_needs_a_second_target() -> None:
    problem = the_problem(MODEL + "    hedge_after_ms: 200\n")
    assert problem.path == "models.gpt" and "at least two targets" in problem.message


def test_a_model_needs_at_least_one_target() -> None:
    problem = the_problem(PROVIDERS + "models:\n  gpt: {targets: []}\n")
    assert (problem.path, problem.line) == ("models.gpt.targets", 4)
    assert "at least one target" in problem.message
    missing = the_problem(PROVIDERS + "models:\n  gpt: {strategy: ordered}\n")
    assert (missing.path, missing.message) == ("models.gpt", "a model needs targets, or versions")


def test_a_config_that_is_not_a_mapping_or_not_yaml_is_one_error() -> None:
    assert "mapping" in the_problem("- a\n- b\n").message
    broken = the_problem("server:\n  drain_s: [1\n")
    assert "not valid YAML" in broken.message
    assert broken.line is not None


def test_an_empty_file_is_the_defaults() -> None:
    assert parse_config("", {}) == Config()


# --- providers ---------------------------------------------------------------------------------


def test_an_unknown_provider_type_lists_the_known_ones() -> None:
    problem = the_problem("providers:\n  x: {type: openia}\n")
    assert problem.path == "providers.x"
    assert problem.line == 2
    assert "'openia'" in problem.message
    for known in ("openai", "anthropic", "gemini"):
        assert known in problem.message


def test_a_provider_specific_key_on_the_wrong_type_is_rejected() -> None:
    problem = the_problem("providers:\n  oai: {type: openai, region: eu-west-1}\n")
    assert problem.path.startswith("providers.oai")
    assert problem.line == 2
    assert "region" in problem.message and "openai" in problem.message


def test_a_provider_type_is_required() -> None:
    assert the_problem("providers:\n  oai: {api_key: x}\n").path == "providers.oai.type"


# --- references --------------------------------------------------------------------------------


def test_dangling_references_are_all_reported_with_their_paths() -> None:
    found = problems(
        PROVIDERS +                                             # lines 1-2
        "models:\n"                                             # 3
        "  gpt:\n"                                              # 4
        "    targets: [{provider: oai}, {provider: azure}]\n"   # 5
        "    fallbacks: [gpt-5]\n"                              # 6
        "teams:\n"                                              # 7
        "  - {name: research, models: [gpt, o3]}\n"             # 8
        "keys:\n"                                               # 9
        "  - {name: ci, key: lg-ci-key-0123456789, team: reserch, models: [claude]}\n"  # 10
    )
    assert {(p.path, p.line) for p in found} == {
        ("models.gpt.targets.1.provider", 5),
        ("models.gpt.fallbacks", 6),
        ("teams.0.models", 8),
        ("keys.0.team", 10),
        ("keys.0.models", 10),
    }
    messages = " | ".join(p.message for p in found)
    for name in ("'azure'", "'gpt-5'", "'o3'", "'reserch'", "'claude'"):
        assert name in messages


def test_a_model_cannot_fall_back_to_itself() -> None:
    problem = the_problem(MODEL + "    fallbacks: [gpt]\n")
    assert problem.path == "models.gpt.fallbacks"


def test_two_keys_cannot_share_a_secret() -> None:
    problem = the_problem(
        "keys:\n  - {name: a, key: lg-same-0123456789}\n  - {name: b, key: lg-same-0123456789}\n")
    assert problem.path == "keys.1.key"
    assert "lg-same-0123456789" not in str(problem)  # a secret never shows in an error


def test_several_schema_errors_are_reported_together() -> None:
    found = problems(
        "server:\n"
        "  drain_s: -1\n"
        "  bogus: 1\n"
        "providers:\n"
        "  x: {type: nope}\n"
        "  oai: {type: openai, timeout_s: slow}\n"
        "models:\n"
        "  gpt:\n"
        "    targets: [{provider: oai}]\n"
        "    strategy: random\n"
        "keys:\n"
        "  - {name: ci, key: lg-ci-key-0123456789, rpm: 0}\n"
        "extra: true\n"
    )
    assert [(p.path, p.line) for p in found] == [  # in file order
        ("server.drain_s", 2), ("server.bogus", 3), ("providers.x", 5),
        ("providers.oai.timeout_s", 6), ("models.gpt.strategy", 10), ("keys.0.rpm", 12),
        ("extra", 13),
    ]


def test_the_error_text_holds_every_problem() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config("a: 1\nb: 2\n", {})
    assert str(caught.value).splitlines() == ["a (line 1): unknown key", "b (line 2): unknown key"]


# --- defaults and the frozen result ----------------------------------------------------------------


def test_defaults() -> None:
    config = parse_config(MODEL, {})
    assert config.server.max_body_bytes == 10 * 1024 * 1024
    assert config.server.drain_s == 20
    assert config.server.master_key is None
    assert config.server.expose_route_header is True
    assert config.server.metrics_auth is False
    assert config.server.per_worker_limits is False
    assert (config.server.responses_ttl_s, config.server.encryption_key) == (86400, None)
    assert config.storage == "sqlite:///lockgate.db"
    assert config.redis is None
    gpt = config.models["gpt"]
    assert (gpt.strategy, gpt.retries, gpt.fallbacks, gpt.timeout_s) == ("weighted", 2, (), None)
    assert gpt.targets[0].weight == 1
    assert config.providers["oai"].timeout_s == 60
    assert config.zero_config is False


def test_limits_are_seen_on_keys_and_teams() -> None:
    assert not parse_config(MODEL + "keys:\n  - {name: a, key: lg-key-0123456789}\n", {}).has_limits()
    assert parse_config("keys:\n  - {name: a, key: lg-key-0123456789, rpm: 5}\n", {}).has_limits()
    assert parse_config("teams:\n  - {name: t, budget_usd: 0}\n", {}).has_limits()


def test_the_config_is_frozen() -> None:
    config = parse_config(MODEL, {})
    with pytest.raises(pydantic.ValidationError):
        config.storage = "postgresql://x"
    with pytest.raises(pydantic.ValidationError):
        config.server.drain_s = 1
    with pytest.raises(pydantic.ValidationError):
        config.models["gpt"].retries = 0
    with pytest.raises(pydantic.ValidationError):
        config.providers["oai"].api_key = "sk-other"
    with pytest.raises(pydantic.ValidationError):
        config.models["gpt"].targets[0].weight = 9


# --- zero-config -----------------------------------------------------------------------------------


def test_zero_config_exposes_a_model_for_each_key_variable_set() -> None:
    config = default_config({"OPENAI_API_KEY": "sk-a", "ANTHROPIC_API_KEY": "sk-ant-b",
                             "GEMINI_API_KEY": "AIza-c", "UNRELATED": "x"})
    assert config.zero_config is True
    assert {name: p.type for name, p in config.providers.items()} == \
        {"openai": "openai", "anthropic": "anthropic", "gemini": "gemini"}
    assert config.providers["openai"].api_key == "sk-a"
    targets = {name: [(t.provider, t.model) for t in m.targets] for name, m in config.models.items()}
    assert targets["gpt-4o-mini"] == [("openai", None)]
    assert len(targets) == 3
    assert {t[0][0] for t in targets.values()} == {"openai", "anthropic", "gemini"}


def test_zero_config_with_one_key_has_only_that_provider() -> None:
    config = default_config({"OPENAI_API_KEY": "sk-a"})
    assert list(config.providers) == ["openai"]
    assert list(config.models) == ["gpt-4o-mini"]


def test_zero_config_without_keys_has_no_models_and_is_open() -> None:
    for env in ({}, {"OPENAI_API_KEY": ""}):
        config = default_config(env)
        assert (config.providers, config.models, config.keys) == ({}, {}, ())
        assert config.server.master_key is None


def test_load_config_without_a_path_is_zero_config() -> None:
    assert load_config(None, {"GEMINI_API_KEY": "AIza-c"}) == default_config({"GEMINI_API_KEY": "AIza-c"})


# --- finding and reading the file --------------------------------------------------------------------


def test_find_config_path_prefers_the_flag_then_the_variable_then_the_working_directory(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    env = {"LOCKGATE_CONFIG": "/etc/lockgate/gw.yaml"}
    assert find_config_path(None, {}) is None  # nothing anywhere: built-in defaults
    (tmp_path / "lockgate.yaml").write_text("{}\n")
    assert find_config_path(None, {}) == "lockgate.yaml"
    assert find_config_path(None, env) == "/etc/lockgate/gw.yaml"
    assert find_config_path("mine.yaml", env) == "mine.yaml"


def test_find_config_path_ignores_a_directory_named_lockgate_yaml(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "lockgate.yaml").mkdir()
    assert find_config_path(None, {}) is None


def test_load_config_reads_and_substitutes_a_file(tmp_path: Path) -> None:
    path = tmp_path / "gw.yaml"
    path.write_text("server: {master_key: '${MK}'}\n")
    assert load_config(path, {"MK": "from-env"}).server.master_key == "from-env"


def test_an_unreadable_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path / "absent.yaml", {})
    assert "absent.yaml" in str(caught.value)


# --- storage path --------------------------------------------------------------------------------


@pytest.mark.parametrize(("storage", "expected"), [
    ("sqlite:///gw.db", "sqlite:///{folder}/gw.db"),
    ("sqlite:///data/../gw.db?timeout=5", "sqlite:///{folder}/gw.db?timeout=5"),
    ("sqlite+aiosqlite:///gw.db", "sqlite+aiosqlite:///{folder}/gw.db"),
    ("sqlite:////var/lib/gw.db", "sqlite:////var/lib/gw.db"),
    ("sqlite:///:memory:", "sqlite:///:memory:"),
    ("postgresql://u@db/gw", "postgresql://u@db/gw"),
])
def test_a_relative_sqlite_path_is_relative_to_the_config_file(
        tmp_path: Path, storage: str, expected: str) -> None:
    (tmp_path / "conf").mkdir()
    path = tmp_path / "conf" / "gw.yaml"
    path.write_text(f"storage: '{storage}'\n")
    assert load_config(path, {}).storage == expected.format(folder=tmp_path / "conf")


def test_without_a_config_file_the_default_sqlite_path_is_the_working_directory() -> None:
    assert load_config(None, {}).storage == "sqlite:///lockgate.db"


def test_a_caller_may_ignore_unset_variables_outside_the_sections_it_uses() -> None:
    text = MODEL.replace("sk-test-0123456789", "'${LG_UNSET}'") + "storage: sqlite:///${DB}.db\n"
    assert parse_config(text, {"DB": "x"}, sections=frozenset({"storage", "models"})).storage \
        == "sqlite:///x.db"
    assert [p.path for p in problems(text, {"DB": "x"})] == ["providers.oai.api_key"]
    with pytest.raises(ConfigError) as caught:
        parse_config(text, {}, sections=frozenset({"storage"}))
    assert [p.path for p in caught.value.problems] == ["providers.oai.api_key", "storage"]


def test_an_unquoted_variable_in_a_flow_mapping_is_explained() -> None:
    problem = the_problem("keys:\n  - {name: ci, key: ${CI_KEY}}\n", {"CI_KEY": "lg-0123456789"})
    assert problem.line == 2
    assert 'quote a value that holds ${...}: key: "${NAME}"' in problem.message
    assert parse_config('keys:\n  - {name: ci, key: "${CI_KEY}"}\n', {"CI_KEY": "lg-0123456789"}).keys


@pytest.mark.parametrize(("text", "message"), [
    ("providers:\n  oai: {type: openai, api_key: x, path: models/m.onnx}\n",
     "provider type 'openai' does not take: path"),
    ("providers:\n  oai: {type: openai, api_key: x, threads: 4}\n",
     "provider type 'openai' does not take: threads"),
])
def test_in_process_keys_belong_to_in_process_providers(text: str, message: str) -> None:
    problem = the_problem(text)
    assert (problem.line, problem.message) == (2, message)


def test_in_process_providers_take_a_path_and_threads() -> None:
    config = parse_config("providers:\n  local: {type: onnx, path: models/fraud.onnx, threads: 2}\n"
                          "  iris: {type: sklearn, path: iris.skops, trusted_types: [a.B]}\n", {})
    assert config.providers["local"].model_dump()["threads"] == 2
    assert config.providers["iris"].model_dump()["trusted_types"] == ("a.B",)
    assert the_problem("providers:\n  local: {type: onnx}\n").path == "providers.local.path"


VERSIONS = PROVIDERS + """models:
  iris:
    versions:
      "1": {targets: [{provider: oai, model: a}]}
      "2": {targets: [{provider: oai, model: b}], fallbacks: [iris@1]}
    default_version: "2"
"""


def test_a_model_may_have_versions_with_a_default() -> None:
    iris = parse_config(VERSIONS, {}).models["iris"]
    assert (list(iris.versions), iris.default) == (["1", "2"], "2")
    assert iris.versions["2"].fallbacks == ("iris@1",)


@pytest.mark.parametrize(("text", "path", "message"), [
    (VERSIONS.replace('    default_version: "2"\n', ""), "models.iris",
     "default_version is required: which of 1, 2 serves a request that names no version?"),
    (VERSIONS.replace('default_version: "2"', 'default_version: "3"'), "models.iris",
     "default_version '3' is not one of the versions (1, 2)"),
    (VERSIONS.replace("fallbacks: [iris@1]", "fallbacks: [iris@4]"), "models.iris.versions.2.fallbacks",
     "the model 'iris' has no version '4'"),
    (VERSIONS.replace("fallbacks: [iris@1]", "fallbacks: [iris@2]"), "models.iris.versions.2.fallbacks",
     "a model cannot fall back to itself"),
    (VERSIONS.replace('"1": {targets: [{provider: oai', '"1": {targets: [{provider: nope'),
     "models.iris.versions.1.targets.0.provider", "no provider named 'nope'"),
    (VERSIONS + "    retries: 1\n    price: {per_1k_requests_usd: 1}\n", "models.iris",
     "a model with versions sets price, retries in each version"),
    (VERSIONS.replace('"1":', '"a@b":'), "models.iris.versions",
     "version 'a@b': letters, digits, '.', '_' and '-' only"),
])
def test_versions_are_checked(text: str, path: str, message: str) -> None:
    problem = the_problem(text)
    assert (problem.path, problem.message) == (path, message)
