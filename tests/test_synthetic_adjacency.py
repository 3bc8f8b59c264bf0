"""Tests of the adjacency statistic (sipmask_ref/data/synthetic/adjacency.py)."""

import numpy as np

from sipmask_ref.data.synthetic.adjacency import adjacency_flags, adjacency_stats, format_stats
from sipmask_ref.data.synthetic.writing import annotation_fields


def _coco_from_masks(masks: list[np.ndarray], category_ids: list[int]) -> dict:
    """A one-image COCO dict holding ``masks`` as RLE annotations."""
    anns = []
    for k, (mask, cat) in enumerate(zip(masks, category_ids, strict=True)):
        rle, bbox, area = annotation_fields(mask)
        anns.append(
            {
                "id": k + 1,
                "image_id": 1,
                "category_id": cat,
                "segmentation": rle,
                "bbox": bbox,
                "area": area,
                "iscrowd": 0,
            }
        )
    return {
        "images": [{"id": 1, "file_name": "x.png", "width": 64, "height": 64}],
        "categories": [{"id": 10, "name": "disc"}, {"id": 20, "name": "square"}],
        "annotations": anns,
    }


def test_adjacency_on_a_hand_built_image():
    y, x = np.mgrid[:64, :64]
    in_square = (x >= 4) & (x < 24) & (y >= 4) & (y < 24)
    upper = in_square & (x > y)  # two triangles touching along the square's diagonal,
    lower = in_square & (x <= y)  # each box holds about half of the other: both adjacent
    far = (x >= 50) & (x < 60) & (y >= 50) & (y < 60)  # same class, alone: not adjacent
    other = (x >= 20) & (x < 40) & (y >= 30) & (y < 40)  # another class, no same-class neighbour
    stats = adjacency_stats(_coco_from_masks([upper, lower, far, other], [10, 10, 10, 20]))
    assert stats["adjacent"] == 2 and stats["instances"] == 4 and stats["adjacency"] == 0.5
    assert stats["per_class"] == {
        "disc": {"instances": 3, "adjacent": 2},
        "square": {"instances": 1, "adjacent": 0},
    }
    # the same layout with the lower triangle of another class: nobody is adjacent
    stats = adjacency_stats(_coco_from_masks([upper, lower, far, other], [10, 20, 10, 20]))
    assert stats["adjacent"] == 0
    assert "adjacency 0.0%" in format_stats(stats)


def test_adjacency_threshold_is_inclusive():
    a = np.zeros((12, 12), dtype=bool)
    a[:10, :10] = True  # box of a: 10 x 10 = 100 pixels
    a[1:, 9] = False
    a[9, 8] = False  # a keeps (row 0, column 9): its box stays 10 x 10
    b = np.zeros_like(a)
    b[1:10, 9:12] = True
    b[9, 8] = True  # b holds exactly 10 pixels of a's box
    assert adjacency_flags(np.stack([a, b]), [1, 1]).tolist()[0]
    b[9, 8] = False  # 9 pixels: below 10%
    assert not adjacency_flags(np.stack([a, b]), [1, 1]).tolist()[0]
