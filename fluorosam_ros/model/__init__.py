"""FluoroSAM: a language-promptable Segment-Anything model for X-ray (segment-anything layout: one file per part)."""
