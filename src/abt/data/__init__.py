"""Data: audio loading, log-mel front-end, packed mel store, embedded default data set."""
