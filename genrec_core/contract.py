"""The raw-log contract shared by the generator, extract and tests.

Raw logs live at ``{events_uri}/dt=YYYY-MM-DD/*.parquet``. Columns may be added
upstream; none of these may be renamed.
"""

from __future__ import annotations

EVENT_TYPES: tuple[str, ...] = ("view", "click", "add_to_cart", "purchase", "rating")
REQUIRED_COLUMNS: tuple[str, ...] = ("user_id", "item_id", "event_type", "event_ts", "value")

# Implicit-feedback strength of each event type; a (user, item) pair takes the
# largest weight it shows, so a purchase outranks the views that led to it.
# `rating` events count only at or above the rating threshold and then weigh this much.
DEFAULT_EVENT_WEIGHTS: dict[str, float] = {
    "view": 1.0,
    "click": 2.0,
    "add_to_cart": 3.0,
    "purchase": 5.0,
    "rating": 4.0,
}

# Rejection reasons written to the quarantine output's `reason` column.
REJECT_EMPTY_USER = "empty_user_id"
REJECT_EMPTY_ITEM = "empty_item_id"
REJECT_EVENT_TYPE = "unknown_event_type"
REJECT_TIMESTAMP = "bad_timestamp"
REJECT_OUT_OF_PARTITION = "timestamp_outside_partition"
REJECT_VALUE = "bad_value"
REJECT_REASONS: tuple[str, ...] = (
    REJECT_EMPTY_USER,
    REJECT_EMPTY_ITEM,
    REJECT_EVENT_TYPE,
    REJECT_TIMESTAMP,
    REJECT_OUT_OF_PARTITION,
    REJECT_VALUE,
)

# Output table columns (Parquet and Postgres).
RECOMMENDATION_COLUMNS: tuple[str, ...] = ("run_date", "user_id", "rank", "item_id", "score", "model", "source")
SOURCE_MODEL = "model"
SOURCE_FALLBACK = "fallback"


def partition_name(day: "object") -> str:
    """The directory name of one day's partition, e.g. ``dt=2026-11-20``."""
    return f"dt={day}"
