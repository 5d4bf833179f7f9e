"""``sklearn``: a scikit-learn model file served inside the gateway (``_sklearn_model``)."""

from __future__ import annotations

from lockgate.providers._inprocess import InProcessProvider, InProcessSettings, Runtime, missing_library


class SklearnSettings(InProcessSettings):
    # Types in a .skops file that skops does not trust by default, trusted by name
    # ("mypackage.MyTransformer"): the operator's decision, never the file's.
    trusted_types: tuple[str, ...] = ()


class SklearnProvider(InProcessProvider):
    type_name = "sklearn"
    settings_model = SklearnSettings

    def load(self) -> Runtime:
        try:
            from lockgate.providers._sklearn_model import SklearnModel, load_estimator
        except ImportError as exc:
            raise missing_library(self.type_name, exc) from None
        assert isinstance(self.settings, SklearnSettings)
        estimator = load_estimator(self.settings.path, self.settings.trusted_types, self.name)
        return SklearnModel(estimator, self.name)
