"""The ``experiments:`` config section: what it accepts, and each mistake reported at its path."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from lockgate.config import ConfigError, parse_config
from lockgate.telemetry.startup import startup_lines

BASE: dict[str, Any] = {
    "providers": {"oai": {"type": "openai", "api_key": "sk-x"}},
    "models": {
        "summarizer": {"versions": {"v1": {"targets": [{"provider": "oai", "model": "gpt-4o-mini"}]},
                                    "v2": {"targets": [{"provider": "oai", "model": "gpt-4o"}]}},
                       "default_version": "v1"},
        "other": {"targets": [{"provider": "oai", "model": "gpt-4o"}]},
    },
}
TRIAL = {"model": "summarizer", "variants": {"control": {"use": "summarizer@v1", "weight": 90},
                                             "candidate": {"use": "summarizer@v2", "weight": 10}},
         "sticky": "user", "shadow": ["other"],
         "rollback": {"max_error_rate": 0.05, "max_p95_latency_ratio": 2.0, "min_requests": 200}}


def problems(experiments: dict[str, Any]) -> dict[str, str]:
    with pytest.raises(ConfigError) as caught:
        parse_config(yaml.safe_dump({**BASE, "experiments": experiments}, sort_keys=False), {})
    return {p.path: p.message for p in caught.value.problems}


def test_the_interface_example_is_valid() -> None:
    config = parse_config(yaml.safe_dump({**BASE, "experiments": {"haiku-trial": TRIAL}},
                                         sort_keys=False), {})
    trial = config.experiments["haiku-trial"]
    assert (trial.control, trial.candidates, trial.alpha) == ("control", ["candidate"], 0.05)
    assert trial.rollback is not None and trial.rollback.min_requests == 200


def test_the_control_is_the_variant_named_control_else_the_first() -> None:
    config = parse_config(yaml.safe_dump({**BASE, "experiments": {"t": {
        "model": "summarizer", "variants": {"old": {"use": "summarizer@v1"},
                                            "new": {"use": "summarizer@v2"}}}}}, sort_keys=False), {})
    assert config.experiments["t"].control == "old"


@pytest.mark.parametrize(("change", "path", "message"), [
    ({"model": "sumarizer"}, "experiments.t.model",
     "no model named 'sumarizer' (did you mean 'summarizer'?)"),
    ({"variants": {"control": {"use": "summarizer@v9"}, "b": {"use": "other"}}},
     "experiments.t.variants.control.use", "the model 'summarizer' has no version 'v9'"),
    ({"variants": {"control": {"use": "summarizer@v1"}}}, "experiments.t.variants",
     "an experiment needs at least two variants"),
    ({"variants": {"a": {"use": "other", "weight": 0}, "b": {"use": "other", "weight": 0}}},
     "experiments.t.variants", "at least one variant needs a weight above 0"),
    ({"shadow": ["missing"]}, "experiments.t.shadow.0", "no model named 'missing'"),
    ({"sticky": "session"}, "experiments.t.sticky", "Input should be 'user', 'key' or 'none'"),
    ({"rollback": {"min_requests": 10}}, "experiments.t.rollback",
     "rollback needs max_error_rate or max_p95_latency_ratio"),
    ({"rollback": {"max_error_rate": 0.1, "max_errors": 3}}, "experiments.t.rollback.max_errors",
     "unknown key"),
    ({"alpha": 0.9}, "experiments.t.alpha", "Input should be less than 0.5"),
    ({"shadow_max_parallel": 0}, "experiments.t.shadow_max_parallel", "Input should be greater than 0"),
])
def test_each_mistake_is_reported_at_its_path(change: dict[str, Any], path: str, message: str) -> None:
    found = problems({"t": {**TRIAL, **change}})
    assert path in found, found
    assert found[path].startswith(message)


def test_one_model_is_split_by_one_experiment() -> None:
    found = problems({"a": TRIAL, "b": TRIAL})
    assert found == {"experiments.b.model": "the model 'summarizer' is already split by 'a'"}


def test_the_start_up_log_names_each_experiment() -> None:
    config = parse_config(yaml.safe_dump({**BASE, "experiments": {"haiku-trial": TRIAL}},
                                         sort_keys=False), {})
    lines = [m for _, m in startup_lines(config, None, 1, stored_keys=0)]
    assert ("experiment haiku-trial: summarizer -> control summarizer@v1 (90), candidate "
            "summarizer@v2 (10); control control; sticky user; shadow: other; automatic rollback") in lines
