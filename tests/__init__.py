"""Tests, grouped by stage; shared helpers in support.py, the model contract in model_contract.py."""
