"""FluoroSeg-style synthetic data engine: views, ground truth, text, tools, domain randomisation, shards."""
