"""What the ablation study trains and claims: the variants, the rows of Tables 2-5, the paper's claims.

Paper §4.3 (Tables 2-5) switches one component of SipMask at a time. Here each table is data:

    Variant          one setting of the four ablation switches of SipMaskConfig (FULL: SipMask,
                     BASELINE: the YOLACT-like baseline of Table 2)
    Row              a table row: its label, the variant it trains, the paper's COCO mask AP if known
    Claim            a statement of the paper as a contrast of rows ('row A beats row B')
    Table, TABLES    the four tables: rows, the paper's COCO numbers where this module transcribes
                     them, and the claims the paper makes
    unique_variants  every variant the tables train, once (12 unique variants for 19 rows)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Variant:
    """The four §4.3 ablation switches of SipMaskConfig; the defaults are full SipMask."""

    sub_regions: tuple[int, int] = (2, 2)  # (k_h, k_w) sets of spatial coefficients per box
    basis_source: str = "p3-p5"  # 'p3' (YOLACT-like) | 'p3-p5' contextual basis masks
    alignment_weight: str = "cls+loc"  # mask loss weighting: 'none' | 'cls' | 'loc' | 'cls+loc'
    feature_alignment: bool = True  # deformable-conv feature alignment of the SP module

    @property
    def key(self) -> str:
        """A file-name-safe name, e.g. 'sr2x2_p3-p5_cls+loc_fa'."""
        k_h, k_w = self.sub_regions
        alignment = "fa" if self.feature_alignment else "nofa"
        return f"sr{k_h}x{k_w}_{self.basis_source}_{self.alignment_weight}_{alignment}"

    def switches(self) -> dict[str, Any]:
        """The switches as SipMaskConfig field values."""
        return dataclasses.asdict(self) | {"sub_regions": tuple(self.sub_regions)}


FULL = Variant()
BASELINE = Variant(sub_regions=(1, 1), basis_source="p3", alignment_weight="none", feature_alignment=False)


@dataclass(frozen=True)
class Row:
    """One row of a table: a label, the variant it trains, the paper's COCO minival mask AP (if known)."""

    label: str
    variant: Variant
    paper_ap: float | None = None


@dataclass(frozen=True)
class Claim:
    """A statement of the paper as a contrast of rows: sum_k coefficient_k * AP(row_k) > 0."""

    text: str
    contrast: tuple[tuple[str, float], ...]  # (row label, coefficient)
    paper_delta: float | None = None  # the same contrast on the paper's numbers, where available


@dataclass(frozen=True)
class Table:
    key: str
    title: str
    note: str
    rows: tuple[Row, ...]
    claims: tuple[Claim, ...]


def _better(a: str, b: str, text: str, paper_delta: float | None = None) -> Claim:
    return Claim(text, ((a, 1.0), (b, -1.0)), paper_delta)


_SP = Variant(sub_regions=(2, 2), basis_source="p3", alignment_weight="none", feature_alignment=True)
_CBM = Variant(sub_regions=(2, 2), basis_source="p3-p5", alignment_weight="none", feature_alignment=True)
# The numbers of the paper's Tables 2 and 3 are not transcribed here (the text this module was written
# from lacked them); the paper itself has them: https://arxiv.org/abs/2007.14772
_CUT = "not transcribed here (see the paper, arXiv:2007.14772)"

TABLES: tuple[Table, ...] = (
    Table(
        "table2",
        "Table 2: progressively adding SP, CBM and WL to the YOLACT-like baseline",
        "Baseline: P3 basis, one set of coefficients (1x1), no loss weighting, no feature alignment. "
        "+SP: 2x2 spatial coefficients with feature alignment; +CBM: P3-P5 basis; +WL: cls+loc weighting. "
        f"Paper: the text gives the baseline's mask AP, 31.2; the table's other numbers are {_CUT}.",
        (Row("baseline", BASELINE, 31.2), Row("+SP", _SP), Row("+CBM", _CBM), Row("+WL", FULL)),
        (
            _better("+SP", "baseline", "SP improves over the baseline"),
            _better("+CBM", "+SP", "CBM improves further"),
            _better("+WL", "+CBM", "WL improves further"),
            Claim(
                "the largest gain comes from SP (gain of SP > gain of CBM)",
                (("+SP", 2.0), ("baseline", -1.0), ("+CBM", -1.0)),
            ),
            Claim(
                "the largest gain comes from SP (gain of SP > gain of WL)",
                (("+SP", 1.0), ("baseline", -1.0), ("+WL", -1.0), ("+CBM", 1.0)),
            ),
        ),
    ),
    Table(
        "table3",
        "Table 3: feature alignment in the SP module, the rest full SipMask",
        f"Paper numbers: {_CUT}.",
        (
            Row("without alignment", dataclasses.replace(FULL, feature_alignment=False)),
            Row("with alignment", FULL),
        ),
        (_better("with alignment", "without alignment", "feature alignment improves mask AP"),),
    ),
    Table(
        "table4",
        "Table 4: number of sub-regions (sets of spatial coefficients), the rest full SipMask",
        "Paper: COCO minival mask AP. The paper's 1x1 reads 31.2, the Table 2 baseline: it appears to "
        "vary the sub-regions on top of its baseline, while here the rest is full SipMask (as the issue "
        "asks), so compare differences between rows, not levels.",
        tuple(
            Row(f"{k_h}x{k_w}", dataclasses.replace(FULL, sub_regions=(k_h, k_w)), ap)
            for (k_h, k_w), ap in (
                ((1, 1), 31.2),
                ((1, 2), 32.2),
                ((2, 1), 32.1),
                ((2, 2), 32.9),
                ((3, 3), 33.1),
                ((4, 4), 33.1),
            )
        ),
        (
            _better("2x2", "1x1", "a large gain from 1x1 to 2x2", 1.7),
            _better("1x2", "1x1", "1x2 beats 1x1", 1.0),
            _better("2x1", "1x1", "2x1 beats 1x1", 0.9),
            _better("2x2", "1x2", "2x2 beats 1x2", 0.7),
            _better("2x2", "2x1", "2x2 beats 2x1", 0.8),
            _better("3x3", "2x2", "3x3 is marginally better than 2x2", 0.2),
            _better("4x4", "2x2", "4x4 is marginally better than 2x2", 0.2),
        ),
    ),
    Table(
        "table5",
        "Table 5: mask alignment weighting, the rest full SipMask",
        "Paper: COCO minival mask AP; its 'baseline' (no weighting) reads 31.2, the Table 2 baseline, so "
        "the paper appears to add the weighting to its baseline; here the rest is full SipMask.",
        (
            Row("none", _CBM, 31.2),
            Row("only cls", dataclasses.replace(FULL, alignment_weight="cls"), 31.8),
            Row("only loc", dataclasses.replace(FULL, alignment_weight="loc"), 31.7),
            Row("cls+loc", FULL, 32.0),
        ),
        (
            _better("only cls", "none", "weighting by the class score helps", 0.6),
            _better("only loc", "none", "weighting by the ground-truth overlap helps", 0.5),
            _better("cls+loc", "only cls", "cls+loc beats cls alone", 0.2),
            _better("cls+loc", "only loc", "cls+loc beats loc alone", 0.3),
        ),
    ),
)


def unique_variants(tables: Sequence[Table] = TABLES) -> list[Variant]:
    """Every variant the tables train, once, in order of first appearance."""
    seen: dict[str, Variant] = {}
    for table in tables:
        for row in table.rows:
            seen.setdefault(row.variant.key, row.variant)
    return list(seen.values())
