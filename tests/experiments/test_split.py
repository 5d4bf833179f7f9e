"""``pipeline.experiment.ExperimentSplit``: the decision a split applies, with plain plans."""

from __future__ import annotations

from lockgate.config import ExperimentConfig
from lockgate.pipeline.auth import Principal
from lockgate.pipeline.experiment import ExperimentSplit
from lockgate.pipeline.route import ModelPlan, Subject

CONFIG = ExperimentConfig.model_validate({
    "model": "m", "variants": {"control": {"use": "m@1"}, "candidate": {"use": "m@2"}}})
PLANS = {"control": ModelPlan("m", (), version="1", variant="control"),
         "candidate": ModelPlan("m", (), version="2", variant="candidate")}
DEFAULT = ModelPlan("m", (), version="1")
SUBJECTS = [Subject(Principal(key_id="k", name="k"), f"user-{i}") for i in range(20)]


def picked(split: ExperimentSplit) -> set[str | None]:
    return {split.pick(s).variant for s in SUBJECTS}


def test_each_decision_sends_the_traffic_where_it_says() -> None:
    split = ExperimentSplit("t", CONFIG, PLANS, DEFAULT)
    assert picked(split) == {"control", "candidate"}
    split.decide("promoted", "candidate")
    assert picked(split) == {"candidate"}
    split.decide("rolled_back", "control")
    assert picked(split) == {"control"}
    split.decide("stopped", None)
    assert picked(split) == {None}
    split.decide("running", None)
    assert picked(split) == {"control", "candidate"}


def test_a_decided_variant_gone_from_the_config_sends_the_traffic_to_the_default() -> None:
    split = ExperimentSplit("t", CONFIG, PLANS, DEFAULT)
    split.decide("promoted", "renamed-since")
    assert {split.pick(s) for s in SUBJECTS} == {DEFAULT}
