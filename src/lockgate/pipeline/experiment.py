"""Step 4, for a model with an experiment: which variant's plan serves this request.

The router gives the experiment's model a plan whose ``split`` is an ``ExperimentSplit``
(built once from the config); every other model's plan has none, and pays one attribute test
per request for the feature. ``pick`` hashes the request's unit (end user, key, or nothing)
onto a variant (``routing.assignment``) and returns that variant's plan: the model it uses,
named as the client asked, with ``variant`` set for the ``x-lockgate-variant`` header and the
record. Once the experiment is decided (promoted, rolled back, stopped: ``decide``, from the
state every worker polls), every request gets the one plan that decision names.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from lockgate.routing.assignment import Assigner

if TYPE_CHECKING:
    from lockgate.config import ExperimentConfig
    from lockgate.pipeline.route import ModelPlan, Subject

STOPPED, PROMOTED, ROLLED_BACK = "stopped", "promoted", "rolled_back"


class ExperimentSplit:
    __slots__ = ("_assigner", "_sticky", "config", "decided", "default", "name", "plans")

    def __init__(self, name: str, config: ExperimentConfig, plans: Mapping[str, ModelPlan],
                 default: ModelPlan) -> None:
        self.name = name
        self.config = config
        self.plans = dict(plans)  # variant -> its plan
        self.default = default  # the model's own plan, for a stopped experiment
        self._assigner = Assigner(name, {v: arm.weight for v, arm in config.variants.items()})
        self._sticky = config.sticky
        self.decided: ModelPlan | None = None  # set once the experiment is no longer running

    def pick(self, subject: Subject) -> ModelPlan:
        if self.decided is not None:
            return self.decided
        return self.plans[self._assigner.assign(self._unit(subject))]

    def _unit(self, subject: Subject) -> str | None:
        """What the assignment is sticky on: the end user (else the key, for requests that
        name none), the key, or nothing (each request drawn afresh)."""
        if self._sticky == "user":
            user = subject.user
            return f"user:{user}" if user is not None else _key_unit(subject)
        return _key_unit(subject) if self._sticky == "key" else None

    def decide(self, status: str, variant: str | None) -> None:
        """Applies the shared state: promoted or rolled back to ``variant``, stopped (the
        model's default), or running again (None)."""
        if status in (PROMOTED, ROLLED_BACK):
            # A variant since renamed in the config: the model's default, never the split again.
            self.decided = self.plans.get(variant or "", self.default)
        elif status == STOPPED:
            self.decided = self.default
        else:
            self.decided = None


def _key_unit(subject: Subject) -> str | None:
    return f"key:{subject.key_id}" if subject.key_id is not None else None
