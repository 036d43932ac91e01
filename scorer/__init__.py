"""The scorer service: scores a features topic with any scikit-learn model (laid out by its
schema), serves /predict, trains the shipped examples."""
