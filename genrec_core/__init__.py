"""genrec: a nightly batch recommender (extract -> train -> evaluate -> score -> publish).

Everything here is importable and testable without Airflow; heavy libraries
(torch, pyspark) are imported inside the functions that need them.
"""

__version__ = "0.5.0"
