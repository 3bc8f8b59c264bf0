"""What the ablation study trains and claims (sipmask_ref/reproduce/tables.py): each table trains exactly
the intended switches, the paper's numbers, the claims name their own rows."""

from __future__ import annotations

import dataclasses

from sipmask_ref import reproduce
from sipmask_ref.reproduce import BASELINE, FULL, TABLES, Variant

SWITCHES = ("sub_regions", "basis_source", "alignment_weight", "feature_alignment")


def _table(key: str) -> reproduce.Table:
    return next(t for t in TABLES if t.key == key)


def _changed(variant: Variant, reference: Variant = FULL) -> set[str]:
    return {name for name in SWITCHES if getattr(variant, name) != getattr(reference, name)}


# ----------------------------------------------------------------------------------------------------
# the tables train exactly the intended switches
# ----------------------------------------------------------------------------------------------------
def test_table2_progression() -> None:
    rows = {row.label: row.variant for row in _table("table2").rows}
    assert list(rows) == ["baseline", "+SP", "+CBM", "+WL"]
    assert rows["baseline"] == Variant(
        sub_regions=(1, 1), basis_source="p3", alignment_weight="none", feature_alignment=False
    )
    # each step turns on exactly its component(s): SP = 2x2 coefficients + feature alignment
    assert _changed(rows["+SP"], rows["baseline"]) == {"sub_regions", "feature_alignment"}
    assert rows["+SP"].sub_regions == (2, 2) and rows["+SP"].feature_alignment
    assert _changed(rows["+CBM"], rows["+SP"]) == {"basis_source"} and rows["+CBM"].basis_source == "p3-p5"
    assert _changed(rows["+WL"], rows["+CBM"]) == {"alignment_weight"}
    assert rows["+WL"] == FULL and FULL.alignment_weight == "cls+loc"


def test_tables_3_to_5_change_one_switch_of_full_sipmask() -> None:
    t3 = {row.label: row.variant for row in _table("table3").rows}
    assert _changed(t3["without alignment"]) == {"feature_alignment"} and t3["with alignment"] == FULL
    t4 = {row.label: row.variant for row in _table("table4").rows}
    assert list(t4) == ["1x1", "1x2", "2x1", "2x2", "3x3", "4x4"]
    for label, variant in t4.items():
        k_h, k_w = (int(k) for k in label.split("x"))
        assert variant == dataclasses.replace(FULL, sub_regions=(k_h, k_w))
    t5 = {row.label: row.variant for row in _table("table5").rows}
    assert {label: v.alignment_weight for label, v in t5.items()} == {
        "none": "none",
        "only cls": "cls",
        "only loc": "loc",
        "cls+loc": "cls+loc",
    }
    assert all(_changed(v) <= {"alignment_weight"} for v in t5.values())


def test_unique_variants_and_paper_numbers() -> None:
    variants = reproduce.unique_variants()
    assert len(variants) == 12 == len({v.key for v in variants})
    assert BASELINE in variants and FULL in variants
    paper = {row.label: row.paper_ap for row in _table("table4").rows}
    assert paper == {"1x1": 31.2, "1x2": 32.2, "2x1": 32.1, "2x2": 32.9, "3x3": 33.1, "4x4": 33.1}
    assert [row.paper_ap for row in _table("table3").rows] == [None, None]  # not transcribed
    for table in TABLES:  # every claim names rows of its own table
        labels = {row.label for row in table.rows}
        assert all(label in labels for claim in table.claims for label, _ in claim.contrast)
