"""Training of the restorers (``chain train restorer``): damage simulation, clean corpus, per-damage trainers.

Imported only by ``chain train`` and the benchmarks; torch is imported lazily by the trainers that need it.
"""
