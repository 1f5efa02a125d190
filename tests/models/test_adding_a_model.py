"""Adding a model takes its package, one registry line and a test class: shown with a throwaway model.

The package is written to a temporary folder (it is not part of the product): an item
co-occurrence model with one setting. Registering it is the one line a real model adds
to `MODEL_PACKAGES`; everything else (settings section, model choices, training plan,
tuning, the quality benchmark, loading artifacts) must then know it without other edits.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from genrec_core.models import registry
from genrec_core.models.base import Recommender
from tests.model_contract import ModelContract

PACKAGE = "throwaway_cooccurrence"

INIT = '''
"""Item co-occurrence counts: the throwaway model of tests/models/test_adding_a_model.py."""
from __future__ import annotations

from pydantic import Field

from genrec_core.models.spec import ModelConfig, ModelSpec


class CooccurrenceConfig(ModelConfig):
    damping: float = Field(1.0, gt=0.0, description="divide each item's column by its count ** damping")


def search_space(t):
    return {"damping": t.suggest_float("damping", 0.1, 1.0)}


SPEC = ModelSpec(name="cooccurrence", implementation="throwaway_cooccurrence.model:Cooccurrence",
                 config_class=CooccurrenceConfig, search_space=search_space)
'''

MODEL = """
from __future__ import annotations

import numpy as np
import torch

from genrec_core.models.base import Recommender
from genrec_core.models.torch_utils import binary_rows_tensor
from throwaway_cooccurrence import SPEC, CooccurrenceConfig


class Cooccurrence(Recommender):
    spec = SPEC

    def __init__(self, config: CooccurrenceConfig | None = None) -> None:
        super().__init__()
        self.config = config or CooccurrenceConfig()
        self.weights = None

    def _fit(self, train, options) -> None:
        x = train.binary().astype(np.float32)
        co = (x.T @ x).toarray()
        np.fill_diagonal(co, 0.0)
        counts = np.maximum(np.asarray(x.sum(axis=0)).ravel(), 1.0)
        self.weights = torch.from_numpy(co / counts[None, :] ** self.config.damping).float()

    def score(self, history, users=None):
        self._check_history(history)
        return binary_rows_tensor(history, "cpu") @ self.weights

    def config_dict(self):
        return self.config.model_dump()

    def state(self):
        return {"weights": self.weights}

    def load_state(self, config, n_items, state):
        self.config, self.n_items, self.weights = CooccurrenceConfig(**config), n_items, state["weights"]
"""


def _write_package(root: Path) -> None:
    package = root / PACKAGE
    package.mkdir(parents=True, exist_ok=True)
    (package / "__init__.py").write_text(textwrap.dedent(INIT))
    (package / "model.py").write_text(textwrap.dedent(MODEL))


@pytest.fixture(scope="module")
def throwaway_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("throwaway")
    _write_package(root)
    return root


@pytest.fixture(scope="module", autouse=True)
def registered(throwaway_root: Path) -> Iterator[None]:
    """The one registry line, added for this module's tests."""
    with pytest.MonkeyPatch.context() as patch:
        patch.syspath_prepend(str(throwaway_root))
        patch.setattr(registry, "MODEL_PACKAGES", [*registry.MODEL_PACKAGES, PACKAGE])
        yield


class TestCooccurrence(ModelContract):
    """The test class a new model adds: it inherits the whole contract."""

    @classmethod
    def make_model(cls) -> Recommender:
        return registry.build_model("cooccurrence")


def test_the_rest_of_the_system_knows_it_from_the_registry():
    from genrec_core.dev.benchmarks.quality_bench import bench_models
    from genrec_core.train.plan import fine_tunable
    from genrec_core.train.tuning import tunable

    assert "cooccurrence" in registry.model_names()
    assert "cooccurrence" in tunable() and "cooccurrence" not in fine_tunable()
    assert "cooccurrence" in bench_models() and "cooccurrence+ease" not in bench_models()
    assert registry.model_spec("cooccurrence").too_many_items(None, 10**9) is None


def test_settings_gain_its_section_and_accept_its_name(throwaway_root: Path):
    """Settings are built from the registry when genrec_core.config is first imported: a fresh process."""
    code = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(throwaway_root)!r})
        from genrec_core.models import registry
        registry.MODEL_PACKAGES.append({PACKAGE!r})
        from genrec_core.config import load_settings
        settings = load_settings(model="cooccurrence", cooccurrence={{"damping": 0.5}})
        print(settings.model, settings.model_section().damping)
        try:
            load_settings(cooccurrence={{"damping": -1}})
        except Exception as exc:
            print("REFUSED" if "cooccurrence.damping" in str(exc) else exc)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["cooccurrence", "0.5", "REFUSED"]
