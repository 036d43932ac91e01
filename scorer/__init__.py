"""The scorer service: trains the price model, scores the features topic, serves /predict."""
