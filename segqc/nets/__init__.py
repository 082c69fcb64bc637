"""Score networks: tabular ResNet with FiLM, conv NCSN++ for images."""
