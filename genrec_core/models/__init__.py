"""Recommenders sharing one protocol (see `base.Recommender`)."""
