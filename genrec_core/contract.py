"""The raw-log contract shared by the generator, extract and tests.

Raw logs live at ``{events_uri}/dt=YYYY-MM-DD/*.parquet``. Columns may be added
upstream; none of these may be renamed.
"""

from __future__ import annotations

EVENT_TYPES: tuple[str, ...] = ("view", "click", "add_to_cart", "purchase", "rating")
REQUIRED_COLUMNS: tuple[str, ...] = ("user_id", "item_id", "event_type", "event_ts")
# `value` matters only for ratings (and must then be present); a file without it is read as all-null.
OPTIONAL_COLUMNS: tuple[str, ...] = ("value",)
LOG_COLUMNS: tuple[str, ...] = REQUIRED_COLUMNS + OPTIONAL_COLUMNS
LOG_FORMATS: tuple[str, ...] = ("parquet", "csv", "jsonl")

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
REJECT_BAD_ID = "bad_id"  # an id longer than MAX_ID_LENGTH or holding control characters (NUL, newline, ...)
MAX_ID_LENGTH = 256
REJECT_EVENT_TYPE = "unknown_event_type"
REJECT_TIMESTAMP = "bad_timestamp"
REJECT_OUT_OF_PARTITION = "timestamp_outside_partition"
REJECT_VALUE = "bad_value"
REJECT_MALFORMED = "malformed_record"  # a CSV/JSON line that does not parse into the columns
REJECT_SCHEMA_DRIFT = "schema_drift"  # a file whose column has a type that cannot hold the contract's value
# Not invalid data, so not part of the rejected share: a user-day above the bot-guard cap goes to quarantine whole.
CAPPED_USER_DAY = "over_user_day_cap"
REJECT_REASONS: tuple[str, ...] = (
    REJECT_MALFORMED,
    REJECT_SCHEMA_DRIFT,
    REJECT_EMPTY_USER,
    REJECT_EMPTY_ITEM,
    REJECT_BAD_ID,
    REJECT_EVENT_TYPE,
    REJECT_TIMESTAMP,
    REJECT_OUT_OF_PARTITION,
    REJECT_VALUE,
)

# Output table columns (Parquet and Postgres).
RECOMMENDATION_COLUMNS: tuple[str, ...] = ("run_date", "user_id", "rank", "item_id", "score", "model", "source")
SOURCE_MODEL = "model"
SOURCE_FALLBACK = "fallback"


def partition_name(day: object) -> str:
    """The directory name of one day's partition, e.g. ``dt=2026-11-20``."""
    return f"dt={day}"
