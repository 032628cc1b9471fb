"""Train the frozen character encoder of GlyphEncoderFeatures: ``python benchmarks/train_glyph_encoder.py --out DIR``.

The runner is :mod:`dsflow.experiments.train_glyph_encoder` (its docstring has every option); this script only calls it.
"""

from dsflow.experiments.train_glyph_encoder import main

if __name__ == "__main__":
    main()
