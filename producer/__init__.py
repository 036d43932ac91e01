"""The producer service: simulated traffic of the model in MODEL_DIR (drawn from its reference,
laid out as its schema says) and JSONL publishing to the features topic."""
