"""Writes RecBole's atomic file for an S3-Rec sequence file: one row per (user, item), the item's place as
its timestamp, so RecBole's time-ordered leave-one-out split is the one our bench uses.

    python prepare.py ../../../../shared/data/amazon-s3rec/Beauty.txt beauty
"""

import sys
from pathlib import Path

source, name = Path(sys.argv[1]), sys.argv[2]
target = Path(__file__).with_name("data") / name / f"{name}.inter"
target.parent.mkdir(parents=True, exist_ok=True)
with source.open() as lines, target.open("w") as out:
    out.write("user_id:token\titem_id:token\ttimestamp:float\n")
    for line in lines:
        user, *items = line.split()
        out.writelines(f"{user}\t{item}\t{place}\n" for place, item in enumerate(items))
