"""The evaluate stage: the champion behind the newest published date (champion.py) and the gate (gate.py)."""
