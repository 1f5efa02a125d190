"""SANSA (Spisak, Bartyzal, Hoskovec, Peska, Tuma, RecSys 2023): its settings section and self-description.

EASE's item-item weights from a sparse approximate inverse of the Gram matrix (a sparse LDL^T
factorisation, then a sparse approximate inverse of L), so the weights are two sparse
items x items factors with about `weights_per_item` entries per item each, never items^2.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field

from genrec_core.models.spec import ModelConfig, ModelSpec

if TYPE_CHECKING:
    import optuna


ICF_DENSITY = 0.05  # at or below this weight density `auto` factorises incompletely (ICF)


class SANSAConfig(ModelConfig):
    """SANSA's settings: EASE's L2 and how sparse the factors are."""

    l2: float = Field(500.0, gt=0.0, description="L2 penalty on the weights (EASE's l2)")
    weights_per_item: int = Field(
        200,
        ge=1,
        description="stored weights per item in each factor: density = weights_per_item / items (at most 1)",
    )
    factorizer: Literal["auto", "cholmod", "icf"] = Field(
        "auto",
        description="cholmod: exact sparse LDL^T of the Gram matrix, then pruned; icf: incomplete factorisation "
        "(less memory and time at low densities); auto: icf at densities up to ICF_DENSITY (5%, the authors' "
        "rule: sansa warns against cholmod below it), cholmod above",
    )
    scans: int = Field(
        0,
        ge=0,
        description="sweeps of sansa's UMR inverter refining L's approximate inverse; with finetune_steps also 0 "
        "the inverse is its first Schultz step, 2I - L (at 20k items: the same NDCG@20 in a quarter of the time; "
        "at 100k the refinement's residual matrices took 9.7 GB)",
    )
    finetune_steps: int = Field(0, ge=0, description="finishing steps of the UMR inverter")

    def density(self, n_items: int) -> float:
        return min(1.0, self.weights_per_item / max(n_items, 1))

    def factorizer_for(self, n_items: int) -> Literal["cholmod", "icf"]:
        """The factorisation a fit on `n_items` items uses."""
        if self.factorizer != "auto":
            return self.factorizer
        return "icf" if self.density(n_items) <= ICF_DENSITY else "cholmod"


def search_space(t: optuna.trial.BaseTrial) -> dict[str, Any]:
    return {"l2": t.suggest_float("l2", 10.0, 5000.0, log=True)}


SPEC = ModelSpec(
    name="sansa",
    implementation="genrec_core.models.sansa.model:SANSA",
    config_class=SANSAConfig,
    search_space=search_space,
    baseline=True,
    summary="SANSA: EASE's weights as two sparse factors; no items^2 matrix, so no item limit",
)
