"""Predicted Dice: case features, the quality estimator with its interval, the teaching set and the atlas."""
