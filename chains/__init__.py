"""Chains: YAML schema, loader and saver, the Chain engine and the file runner; presets in presets/."""
