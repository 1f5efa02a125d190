"""Development tooling, not production: embedded services, benchmarks, the demo, synthetic logs."""
