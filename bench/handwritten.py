"""The benchmark chain written the plain pedalboard way: the baseline `chain apply` is compared against.

    python bench/handwritten.py IN.wav OUT.wav

HighpassFilter(30 Hz) -> Compressor(-18 dB, 3:1) -> Reverb(room 0.5) -> Limiter, read and written with
pedalboard.io.AudioFile in 8192-sample blocks, output PCM_16 WAV (pedalboard's own float->int16
conversion: no dither), no metering.  The chain has zero latency, so every block comes back whole.  For a
latent chain pedalboard itself returns shorter blocks while it fills up (the latency is dropped at the
start), so the loop below just flushes silence at the end until the output is as long as the input; for
this chain that loop never runs.
"""

import sys

import numpy as np
from pedalboard import Compressor, HighpassFilter, Limiter, Pedalboard, Reverb
from pedalboard.io import AudioFile

BLOCK = 8192


def main(source: str, target: str) -> None:
    board = Pedalboard([
        HighpassFilter(cutoff_frequency_hz=30.0),
        Compressor(threshold_db=-18.0, ratio=3.0),
        Reverb(room_size=0.5),
        Limiter(),
    ])
    with AudioFile(source) as f, AudioFile(target, "w", f.samplerate, f.num_channels, bit_depth=16) as o:
        sr, frames = f.samplerate, f.frames
        written = 0
        while f.tell() < frames:
            block = f.read(BLOCK)
            out = board.process(block, sr, reset=False)
            take = min(out.shape[1], frames - written)
            if take > 0:
                o.write(out[:, :take])
                written += take
        while written < frames:  # only for latent chains: flush with silence until the output is full length
            out = board.process(np.zeros((f.num_channels, BLOCK), np.float32), sr, reset=False)
            take = min(out.shape[1], frames - written)
            o.write(out[:, :take])
            written += take


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: handwritten.py IN.wav OUT.wav")
    main(sys.argv[1], sys.argv[2])
