"""Model names -> classes, so artifacts and settings can name a model."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from genrec_core.config import Settings
    from genrec_core.models.base import Recommender


def model_class(name: str) -> type["Recommender"]:
    from genrec_core.models.cfgan import CFGAN
    from genrec_core.models.ease import EASE
    from genrec_core.models.item_knn import ItemKNN
    from genrec_core.models.mult_vae import MultVAE
    from genrec_core.models.popularity import Popularity
    from genrec_core.models.rec_vae import RecVAE

    classes: dict[str, type[Recommender]] = {
        MultVAE.name: MultVAE, RecVAE.name: RecVAE, CFGAN.name: CFGAN, EASE.name: EASE, ItemKNN.name: ItemKNN, Popularity.name: Popularity}
    if name not in classes:
        raise ValueError(f"unknown model {name!r}; expected one of {sorted(classes)}")
    return classes[name]


def build_model(name: str, settings: "Settings") -> "Recommender":
    """A fresh, unfitted model configured from the settings' section for it."""
    section = getattr(settings, name, None)
    cls = model_class(name)
    return cls(section) if section is not None else cls()
