"""Judging the paper's claims: the seed statistics of each row, a verdict per claim, the tables assembled.

    summarize   mean / std / min / max of mask AP, AP50, AP75 over the seeds of a variant
    judge       a claim 'row A beats row B' against the seed spread -> a verdict in words
    assemble    every run record -> the tables with verdicts (a JSON-ready dict)

Verdict rule. For a claim "A > B" the difference of means d = mean_A - mean_B (mask AP, points) is
compared with its standard error from the seed spread, se = sqrt(std_A^2 / n_A + std_B^2 / n_B)
(std = sample standard deviation over seeds, ddof 1). The claim *holds* when d > 2 se, is *same
direction, within noise* when 0 < d <= 2 se, *not seen* when -2 se <= d <= 0 and *reversed* when
d < -2 se. With 3 seeds this is a rough guide, not a significance test.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from .tables import TABLES, Table

METRICS = ("AP", "AP50", "AP75")  # the mask numbers the tables report
NOISE_FACTOR = 2.0  # a difference must exceed this many standard errors to count as "holds"


def summarize(values: Sequence[float]) -> dict[str, Any]:
    """mean, std (sample standard deviation, ddof 1; 0 for one value), min, max, n of `values`."""
    if not values:
        raise ValueError("summarize: no values")
    n = len(values)
    mean = sum(values) / n
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else 0.0
    return {"mean": mean, "std": std, "min": min(values), "max": max(values), "n": n, "values": list(values)}


VERDICTS = {
    "holds": "holds",
    "weak": "same direction, within seed noise",
    "not_seen": "not seen (within seed noise)",
    "reversed": "reversed (beyond seed noise)",
    "one_seed": "undecided (a row has one seed: no spread)",
}


def judge(contrast: Sequence[tuple[dict[str, Any], float]]) -> dict[str, Any]:
    """Verdict of a claim 'sum_k c_k * mean_k > 0' given each row's summary (see the module docstring).

    Returns delta (the contrast of the means), se (its standard error from the seed spread,
    sqrt(sum_k c_k^2 std_k^2 / n_k)), ratio = delta / se (inf / -inf / 0 when se = 0), seed_std (root
    mean square of the rows' stds), verdict (a key of VERDICTS) and text (plain words).
    """
    delta = sum(c * s["mean"] for s, c in contrast)
    se = math.sqrt(sum(c * c * s["std"] ** 2 / s["n"] for s, c in contrast))
    limit = NOISE_FACTOR * se
    if any(s["n"] < 2 for s, c in contrast if c):
        verdict = "one_seed"
    elif delta > limit:
        verdict = "holds"
    elif delta > 0:
        verdict = "weak"
    elif delta >= -limit:
        verdict = "not_seen"
    else:
        verdict = "reversed"
    ratio = delta / se if se > 0 else (math.copysign(math.inf, delta) if delta else 0.0)
    # the typical seed spread of the rows involved: root mean square of their stds
    seed_std = math.sqrt(sum(s["std"] ** 2 for s, c in contrast if c) / sum(1 for _, c in contrast if c))
    size = f", {abs(delta) / seed_std:.1f}x the seed std of {seed_std:.1f}" if seed_std > 0 else ""
    text = f"{VERDICTS[verdict]}: {delta:+.1f} AP" + (
        "" if verdict == "one_seed" else f"{size}; noise threshold 2 se = {limit:.1f}"
    )
    return {"delta": delta, "se": se, "ratio": ratio, "seed_std": seed_std, "verdict": verdict, "text": text}


def _mask_numbers(record: dict[str, Any]) -> dict[str, float]:
    """Mask AP, AP50, AP75 of a run record, in points (x100)."""
    return {m: 100.0 * float(record["metrics"]["segm"][m]) for m in METRICS}


def assemble(records: Sequence[dict[str, Any]], tables: Sequence[Table] = TABLES) -> dict[str, Any]:
    """Run records -> {'configs': per-variant summaries, 'tables': rows and claims with verdicts}.

    A row whose variant has no record reads None; a claim that needs such a row gets verdict None.
    """
    by_variant: dict[str, list[dict[str, Any]]] = {}
    for record in sorted(records, key=lambda r: (r["variant"], r["seed"])):
        by_variant.setdefault(record["variant"], []).append(record)
    configs = {}
    for key, runs in by_variant.items():
        numbers = [_mask_numbers(r) for r in runs]
        configs[key] = {
            "switches": runs[0]["switches"],
            "seeds": [r["seed"] for r in runs],
            **{m: summarize([x[m] for x in numbers]) for m in METRICS},
            "box_AP": summarize([100.0 * float(r["metrics"]["bbox"]["AP"]) for r in runs]),
        }

    out_tables = []
    for table in tables:
        rows = {row.label: row for row in table.rows}
        out_rows = [
            {
                "label": row.label,
                "variant": row.variant.key,
                "switches": row.variant.switches(),
                "paper_AP": row.paper_ap,
                "result": configs.get(row.variant.key),
            }
            for row in table.rows
        ]
        out_claims = []
        for claim in table.claims:
            parts = [(configs.get(rows[label].variant.key), c) for label, c in claim.contrast]
            known = [(s, c) for s, c in parts if s is not None]
            verdict = judge([(s["AP"], c) for s, c in known]) if len(known) == len(parts) else None
            out_claims.append(
                {
                    "text": claim.text,
                    "contrast": [list(p) for p in claim.contrast],
                    "paper_delta": claim.paper_delta,
                    "result": verdict,
                }
            )
        out_tables.append(
            {
                "key": table.key,
                "title": table.title,
                "note": table.note,
                "rows": out_rows,
                "claims": out_claims,
            }
        )
    return {"configs": configs, "tables": out_tables}
