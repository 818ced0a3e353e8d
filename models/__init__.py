"""Torch architectures, training and model files (neural steps; imported only when used)."""
