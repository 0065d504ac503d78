"""The downstream network F and what the fine-tune takes from it: backbones, the frozen
classifier, gradient-based semantic weights (GSW, Eq. 2–4) and the feature loss (Eq. 10)."""
