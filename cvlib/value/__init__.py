"""Customer value models and their evaluation: ZILN networks, BG/NBD and Gamma-Gamma, tree and
spend-rate baselines, the end-to-end text model, and the metrics every model is judged by."""
