"""The four timm names LiteMedSAM's TinyViT imports, and nothing else.

Every real timm release imports torchvision at import time, and PyPI's torchvision does not
load beside our CPU torch (see FACTS.md). TinyViT only needs a drop-path layer, `to_2tuple`,
a truncated-normal initialiser and a no-op model registry, so `fluorosam_ros.evaluation.litemedsam`
puts this folder on `sys.path` while it imports the peer. It is never importable as `timm`
otherwise.
"""
