"""Training FluoroSAM: losses, prompt sampling and the training loop."""
