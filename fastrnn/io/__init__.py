"""Readers of other frameworks' weights: each converts its format to Keras layout, once."""
