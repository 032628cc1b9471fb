"""The synthetic-script datasets: name -> :class:`~dsflow.data.glyphs.GlyphSpec` (10 characters, Noto fonts).

Digits of three other scripts than Latin, letters of four, and ten hiragana that are NOT KMNIST's ten classes
(KMNIST: o ki su tsu na ha ma ya re wo), so that no development set is a printed copy of a hold-out. Labels of the
digit sets are the digits' values. Fonts: Noto Sans and Noto Serif (Thai: also Noto Looped Thai, the looped style
of Thai handwriting) at several weights; Debian's ``fonts-noto-core``, ``fonts-noto-extra`` and ``fonts-noto-cjk``.
"""

from __future__ import annotations

from dsflow.data.glyphs import GlyphSpec

__all__ = ["SCRIPTS", "NOTO", "weights"]

#: how to get the Noto fonts without root (the error for a missing font names it)
NOTO = ("cd /tmp && apt-get download fonts-noto-core fonts-noto-extra fonts-noto-cjk && "
        "for d in fonts-noto-*.deb; do dpkg -x $d ~/.cache/dsflow/fonts; done  (or: apt-get install those packages)")

_WEIGHTS = ("Light", "Regular", "Medium", "SemiBold", "Bold")


def weights(*families: str, styles: tuple[str, ...] = _WEIGHTS) -> tuple[str, ...]:
    """Font file names ``<family>-<style>.ttf`` for every family and style."""
    return tuple(f"{f}-{s}.ttf" for f in families for s in styles)


def _run(first: int, count: int = 10) -> str:
    return "".join(chr(first + i) for i in range(count))


SCRIPTS: dict[str, GlyphSpec] = {
    "devanagari-digits": GlyphSpec(_run(0x0966), weights("NotoSansDevanagari", "NotoSerifDevanagari"), NOTO,
                                   "Devanagari digits 0-9 (U+0966-096F)"),
    "bengali-digits": GlyphSpec(_run(0x09E6), weights("NotoSansBengali", "NotoSerifBengali"), NOTO,
                                "Bengali digits 0-9 (U+09E6-09EF)"),
    "thai-digits": GlyphSpec(_run(0x0E50), weights("NotoSansThai", "NotoSerifThai", "NotoLoopedThai"), NOTO,
                             "Thai digits 0-9 (U+0E50-0E59)"),
    "khmer-digits": GlyphSpec(_run(0x17E0), weights("NotoSansKhmer", "NotoSerifKhmer"), NOTO,
                              "Khmer digits 0-9 (U+17E0-17E9)"),
    "georgian-letters": GlyphSpec(_run(0x10D0), weights("NotoSansGeorgian", "NotoSerifGeorgian"), NOTO,
                                  "the first ten Georgian Mkhedruli letters (U+10D0-10D9)"),
    "armenian-letters": GlyphSpec(_run(0x0561), weights("NotoSansArmenian", "NotoSerifArmenian"), NOTO,
                                  "the first ten lowercase Armenian letters (U+0561-056A)"),
    "ethiopic-syllables": GlyphSpec("\u1200\u1208\u1210\u1218\u1220\u1228\u1230\u1240\u1260\u1270",
                                    weights("NotoSansEthiopic", "NotoSerifEthiopic"), NOTO,
                                    "the first-order (ä) syllables of ten Ethiopic consonants: ha la Ha ma sza ra sa "
                                    "qa ba ta"),
    "hiragana": GlyphSpec("\u3042\u3044\u3046\u3048\u304b\u304f\u3051\u3053\u3055\u305f",
                          ("NotoSansCJK-Regular.ttc", "NotoSansCJK-Bold.ttc", "NotoSerifCJK-Regular.ttc",
                           "NotoSerifCJK-Bold.ttc"), NOTO,
                          "ten printed hiragana, none of KMNIST's classes: a i u e ka ku ke ko sa ta"),
}
