"""Popularity: the most interacted items (the gate's reference and the fallback list); no settings."""

from __future__ import annotations

from genrec_core.models.spec import ModelSpec

SPEC = ModelSpec(
    name="popularity",
    implementation="genrec_core.models.popularity.model:Popularity",
    summary="most interacted items; also the gate's reference and the fallback list",
)
