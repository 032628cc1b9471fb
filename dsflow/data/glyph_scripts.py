"""The synthetic-script datasets: name -> :class:`~dsflow.data.glyphs.GlyphSpec` (10 characters, Noto fonts).

Digits of three other scripts than Latin, letters of four, and ten hiragana that are NOT KMNIST's ten classes
(KMNIST: o ki su tsu na ha ma ya re wo), so that no development set is a printed copy of a hold-out. Labels of the
digit sets are the digits' values. Fonts: Noto Sans and Noto Serif (Thai: also Noto Looped Thai, the looped style
of Thai handwriting) at several weights; Debian's ``fonts-noto-core``, ``fonts-noto-extra`` and ``fonts-noto-cjk``.

The ``-hw`` sets are the hard ones: :meth:`GlyphDistortion.handwriting` (no shear, strong smooth elastic fields,
a local warp, wide stroke widths, broken strokes, specks) and handwriting, brush and pen fonts where Debian has
them for the script (Nanum Pen/Brush/Barun Pen for Hangul; Kouzan brush, Klee and YOz handwriting for kana;
TLWG Purisa and Sawasdee for Thai), mixed with printed ones; Devanagari and Bengali have no handwriting font in
Debian, only other print styles. Still printed glyphs at heart, not handwriting (docs/pseudo_labels.md).
"""

from __future__ import annotations

from dsflow.data.glyphs import GlyphDistortion, GlyphSpec

__all__ = ["SCRIPTS", "NOTO", "HANDWRITING_FONTS", "weights"]

#: how to get the Noto fonts without root (the error for a missing font names it)
NOTO = ("cd /tmp && apt-get download fonts-noto-core fonts-noto-extra fonts-noto-cjk && "
        "for d in fonts-noto-*.deb; do dpkg -x $d ~/.cache/dsflow/fonts; done  (or: apt-get install those packages)")

_WEIGHTS = ("Light", "Regular", "Medium", "SemiBold", "Bold")


def weights(*families: str, styles: tuple[str, ...] = _WEIGHTS) -> tuple[str, ...]:
    """Font file names ``<family>-<style>.ttf`` for every family and style."""
    return tuple(f"{f}-{s}.ttf" for f in families for s in styles)


#: how to get the extra fonts of the ``-hw`` sets without root
HANDWRITING_FONTS = ("cd /tmp && apt-get download fonts-nanum fonts-nanum-extra fonts-kouzan-mouhitsu fonts-klee "
                     "fonts-yozvox-yozfont-new-kana fonts-yozvox-yozfont-cute fonts-yozvox-yozfont-standard-kana "
                     "fonts-tlwg-purisa-ttf fonts-tlwg-sawasdee-ttf fonts-tlwg-loma-ttf fonts-tlwg-garuda-ttf "
                     "fonts-tlwg-kinnari-ttf fonts-tlwg-norasi-ttf fonts-tlwg-umpush-ttf fonts-tlwg-waree-ttf "
                     "fonts-deva-extra fonts-beng-extra && for d in fonts-*.deb; do dpkg -x $d ~/.cache/dsflow/fonts; "
                     "done  (and the Noto fonts: " + NOTO + ")")
_HW = GlyphDistortion.handwriting()
_KANA = ("kouzan-mouhitsu.ttf", "kouzan-mouhitsu-gyosho.ttf", "KleeOne-Regular.ttf", "KleeOne-SemiBold.ttf",
         "YOzRN_.ttf", "YOzRC_.ttf", "YOzRS_.ttf", "YOzBN_.ttf", "NotoSansCJK-Regular.ttc", "NotoSerifCJK-Bold.ttc")


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
    # the hard sets: the handwriting profile, handwriting/brush fonts where they exist
    "hangul-hw": GlyphSpec("\uac00\ub178\ub2e4\ub7ec\ubb34\ube44\uc18c\uc544\uc800\ud6c4",
                           ("NanumPen.ttf", "NanumBrush.ttf", "NanumBarunpenR.ttf", "NanumBarunpenB.ttf",
                            "NanumGothic.ttf", "NanumMyeongjo.ttf", "NanumSquareRoundR.ttf"), HANDWRITING_FONTS,
                           "ten Hangul syllables (ga no da reo mu bi so a jeo hu: ten initial consonants, six vowels), "
                           "Nanum pen, brush and print fonts", _HW),
    "katakana-hw": GlyphSpec("\u30a2\u30ab\u30b5\u30bf\u30ca\u30cf\u30de\u30e4\u30e9\u30ef", _KANA,
                             HANDWRITING_FONTS, "ten katakana (a ka sa ta na ha ma ya ra wa), brush, handwriting "
                             "and print fonts", _HW),
    "hiragana-hw": GlyphSpec("\u3061\u306b\u306c\u306e\u3072\u3075\u3081\u3082\u3086\u308f", _KANA,
                             HANDWRITING_FONTS, "ten hiragana, none of KMNIST's classes nor of 'hiragana': chi ni "
                             "nu no hi fu me mo yu wa; brush, handwriting and print fonts", _HW),
    "thai-hw": GlyphSpec("\u0e01\u0e02\u0e04\u0e07\u0e08\u0e0a\u0e14\u0e15\u0e1a\u0e1e",
                         ("Purisa.ttf", "Purisa-Bold.ttf", "Sawasdee.ttf", "Sawasdee-Bold.ttf", "Loma.ttf",
                          "Garuda.ttf", "Kinnari.ttf", "Norasi.ttf", "Umpush.ttf", "Waree.ttf",
                          "NotoLoopedThai-Regular.ttf", "NotoLoopedThai-Bold.ttf"), HANDWRITING_FONTS,
                         "ten Thai consonants (ko kho kho ngo cho cho do to bo pho), TLWG handwriting and print "
                         "fonts, Noto Looped Thai", _HW),
    "devanagari-hw": GlyphSpec("\u0915\u0916\u0917\u0918\u091a\u091c\u091f\u0921\u0924\u0928",
                               ("kalimati.ttf", "samanata.ttf", "chandas1-2.ttf", *weights(
                                   "NotoSansDevanagari", "NotoSerifDevanagari", styles=("Light", "Regular", "Bold"))),
                               HANDWRITING_FONTS, "ten Devanagari consonants (ka kha ga gha ca ja Ta Da ta na), "
                               "print fonts only", _HW),
    "bengali-hw": GlyphSpec("\u0995\u0996\u0997\u0998\u099a\u099c\u099f\u09a1\u09a4\u09a8",
                            ("LikhanNormal.ttf", "JamrulNormal.ttf", "Ani.ttf", "Mukti.ttf", "Muktibold.ttf",
                             *weights("NotoSansBengali", "NotoSerifBengali", styles=("Light", "Regular", "Bold"))),
                            HANDWRITING_FONTS, "ten Bengali consonants (ka kha ga gha ca ja Ta Da ta na), print "
                            "fonts only", _HW),
}
