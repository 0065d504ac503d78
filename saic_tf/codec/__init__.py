"""The learned codec: E → Q → D (networks.py), the .saic bitstream and its entropy model
(bitstream.py), and a run's trained codec stages (stages.py)."""
