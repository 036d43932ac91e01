"""The producer service: simulated diamond traffic and JSONL publishing to the features topic."""
