"""The train stage: fine-tune or retrain (plan.py) and the optional hyperparameter search (tuning.py)."""
