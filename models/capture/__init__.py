"""Effect emulation ("captures"): excitation, dry/wet pairing checks, structured model families, the trainer.

Import-light: this package's ``__init__`` imports nothing heavy; ``cli`` imports only argparse and pathlib at
module top.  Modules: ``excitation`` (the built-in test signal), ``pairing`` (rate/length/latency/repeatability
checks and alignment), ``losses``, ``families`` (Wiener–Hammerstein, grey-box compressor), ``trainer`` (the
``auto`` loop), ``report`` (JSON + PNG), ``cli`` (`chain train excitation|emulator`).
"""
