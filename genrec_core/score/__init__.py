"""The score stage: one shard (job.py), shards as Spark tasks (spark.py), item filters, output rows."""
