"""The kanji corpus a frozen character encoder is pretrained on (:mod:`dsflow.data.pseudo.glyph_encoder`).

Its classes share no character with any development set or hold-out: CJK Unified Ideographs only (U+4E00-U+9FFF),
so no kana, no digits, no Hangul and no letter of any script in :mod:`dsflow.data.glyph_scripts`. The rule that
picks them is written here, fixed before any training or measurement (:func:`corpus_chars`):

1. candidates: every code point of U+4E00-U+9FFF, less :data:`EXCLUDED` (the kanji a kana was written from, the
   hentaigana sources of KMNIST's ten hiragana, and kanji whose printed shape is a kana's: a cursive brush kanji
   of these would be a hold-out class under another name) and less every character of a
   :data:`~dsflow.data.glyph_scripts.SCRIPTS` spec;
2. coverage: every font of :data:`CORPUS_FONTS` maps it in its cmap AND draws a glyph that is not .notdef
   (:func:`dsflow.data.glyphs._ink`'s check: brush fonts map thousands of code points to empty glyphs);
3. simplicity: the ``n`` candidates with the least ink in Noto Sans CJK Regular at a fixed size (ink ~ stroke
   count x stroke length; at 28 x 28 a dense kanji is a blob, and the targets are characters of a few strokes),
   ties by code point; classes in code point order.

Fonts: Kouzan brush (mouhitsu, gyosho), Klee One (2 weights), Noto Sans/Serif CJK (2 weights each); the ones the
``katakana-hw`` and ``hiragana-hw`` development sets use, less the kana-only YOz fonts. Kouzan's sousho (cursive)
face is left out: cursive Japanese is the hold-out's style.
"""

from __future__ import annotations

import os

import numpy as np

from dsflow.data.glyph_scripts import HANDWRITING_FONTS, SCRIPTS
from dsflow.data.glyphs import GlyphSpec, find_fonts

__all__ = ["CORPUS_FONTS", "CJK_FIRST", "CJK_LAST", "EXCLUDED", "SIMPLICITY_FONT", "candidates", "corpus_chars",
           "corpus_spec"]

#: the fonts every corpus character must be drawn by (each image of the corpus: one of them, equally likely)
CORPUS_FONTS = ("kouzan-mouhitsu.ttf", "kouzan-mouhitsu-gyosho.ttf", "KleeOne-Regular.ttf", "KleeOne-SemiBold.ttf",
                "NotoSansCJK-Regular.ttc", "NotoSansCJK-Bold.ttc", "NotoSerifCJK-Regular.ttc",
                "NotoSerifCJK-Bold.ttc")
#: the font whose ink at a fixed size ranks candidates by simplicity
SIMPLICITY_FONT = "NotoSansCJK-Regular.ttc"
#: the CJK Unified Ideographs block
CJK_FIRST, CJK_LAST = 0x4E00, 0x9FFF

_HIRAGANA_SOURCES = "安以宇衣於加幾久計己左之寸世曽太知川天止奈仁奴祢禰乃波比不部保末美武女毛也由与良利留礼呂和為恵遠无"
_KATAKANA_SOURCES = "阿伊宇江於加幾久介己散之須世曽多千川州天止奈仁奴祢禰乃八比不部保末三牟女毛也由与良利流礼呂和井恵乎尓爾"
# hentaigana sources of KMNIST's classes (o ki su tsu na ha ma ya re wo)
_KMNIST_SOURCES = "於隠意幾起支喜貴木寸須春数寿川州津都奈那名難菜波八半者盤葉破頗末万満萬麻眞也屋夜耶谷礼連麗禮遠乎越尾"
# kanji drawn like a kana (ー ニ ロ エ カ ハ タ ト ヒ ノ ヽ メ オ チ ヌ ク ム コ ヨ レ ミ ナ)
_KANA_LOOKALIKES = "一二口工力八夕卜匕丿丶乂才千又勹厶匚彐乚三十"

#: ideographs never in the corpus (see the module docstring)
EXCLUDED = frozenset(_HIRAGANA_SOURCES + _KATAKANA_SOURCES + _KMNIST_SOURCES + _KANA_LOOKALIKES)


def candidates() -> list[str]:
    """Step 1: the ideographs of U+4E00-U+9FFF less :data:`EXCLUDED` and every character of a script spec."""
    taken = set(EXCLUDED).union(*(spec.chars for spec in SCRIPTS.values()))
    return [chr(c) for c in range(CJK_FIRST, CJK_LAST + 1) if chr(c) not in taken]


def _covered(chars: list[str], fonts_dir: str | os.PathLike | None) -> list[str]:
    """Step 2: the characters every corpus font maps and draws (not .notdef, not empty)."""
    from fontTools.ttLib import TTFont

    from dsflow.data.glyphs import _ink

    paths = find_fonts(CORPUS_FONTS, fonts_dir, HANDWRITING_FONTS)
    maps = [set(TTFont(str(p), fontNumber=0, lazy=True).getBestCmap()) for p in paths]
    kept = [ch for ch in chars if all(ord(ch) in m for m in maps)]

    def drawn(ch: str) -> bool:
        try:
            for p in paths:
                _ink(p, ch, size=32)
        except ValueError:
            return False
        return True

    return [ch for ch in kept if drawn(ch)]


def corpus_chars(n: int, fonts_dir: str | os.PathLike | None = None) -> str:
    """The ``n`` corpus classes (steps 1-3 of the module docstring), in code point order."""
    from dsflow.data.glyphs import _ink

    if n < 2:
        raise ValueError(f"corpus_chars: need n >= 2 classes, got {n}")
    covered = _covered(candidates(), fonts_dir)
    if len(covered) < n:
        raise ValueError(f"corpus_chars: only {len(covered)} ideographs are drawn by every corpus font, asked {n}")
    (simple,) = find_fonts((SIMPLICITY_FONT,), fonts_dir, HANDWRITING_FONTS)
    ink = np.array([_ink(simple, ch, size=64).sum() for ch in covered])  # (len(covered),)
    order = np.lexsort((np.array([ord(ch) for ch in covered]), ink))  # least ink first, ties by code point
    return "".join(sorted(covered[i] for i in order[:n]))


def corpus_spec(chars: str) -> GlyphSpec:
    """The corpus as a :class:`~dsflow.data.glyphs.GlyphSpec`: class c is ``chars[c]``, the corpus fonts and the
    handwriting profile of the ``-hw`` development sets."""
    from dsflow.data.glyphs import GlyphDistortion

    return GlyphSpec(chars, CORPUS_FONTS, HANDWRITING_FONTS, "kanji corpus of the glyph encoder",
                     GlyphDistortion.handwriting())
