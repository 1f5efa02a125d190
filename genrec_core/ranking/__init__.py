"""Ranking below the models: the deterministic top-k kernel and the metrics (early stopping uses both)."""
