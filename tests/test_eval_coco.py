"""COCO evaluation on hand-made ground truth small enough to score by hand."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from pycocotools import mask as mask_util
from pycocotools.coco import COCO

from sipmask_ref.eval.coco import (
    STAT_NAMES,
    detection_owners,
    encode_masks,
    evaluate_coco,
    format_table,
    per_class_ap,
    predictions_to_coco_results,
    save_metrics,
    save_results,
)

# (image_id, category_id, x1, y1, x2, y2): rectangles, so a mask and its box are the same pixels.
# Image 1 (120 x 120) holds one object of each COCO size class: small (10x10 = 100 px),
# medium (40x40 = 1600 px) and large (100x100 = 10000 px > 96^2); image 2 (80 x 60) one medium object.
IMAGES = {1: (120, 120), 2: (80, 60)}  # id -> (width, height)
OBJECTS = [
    (1, 3, 5, 5, 15, 15),
    (1, 7, 60, 70, 100, 110),
    (1, 3, 10, 12, 110, 112),
    (2, 7, 20, 10, 60, 50),
]
LABEL_TO_CAT_ID = {1: 3, 2: 7}  # non-contiguous dataset ids
CAT_ID_TO_LABEL = {v: k for k, v in LABEL_TO_CAT_ID.items()}


def rect_mask(image_id: int, x1: int, y1: int, x2: int, y2: int) -> np.ndarray:
    width, height = IMAGES[image_id]
    mask = np.zeros((height, width), dtype=np.uint8)
    mask[y1:y2, x1:x2] = 1
    return mask


def make_gt(objects=OBJECTS, first_ann_id: int = 1) -> COCO:
    annotations = []
    for k, (image_id, cat_id, x1, y1, x2, y2) in enumerate(objects):
        rle = mask_util.encode(np.asfortranarray(rect_mask(image_id, x1, y1, x2, y2)))
        rle["counts"] = rle["counts"].decode("ascii")
        annotations.append(
            {
                "id": first_ann_id + k,
                "image_id": image_id,
                "category_id": cat_id,
                "bbox": [x1, y1, x2 - x1, y2 - y1],
                "area": (x2 - x1) * (y2 - y1),
                "iscrowd": 0,
                "segmentation": rle,
            }
        )
    coco = COCO()
    coco.dataset = {
        "images": [
            {"id": i, "width": w, "height": h, "file_name": f"{i}.png"} for i, (w, h) in IMAGES.items()
        ],
        "categories": [{"id": 3, "name": "three"}, {"id": 7, "name": "seven"}],
        "annotations": annotations,
    }
    coco.createIndex()
    return coco


def make_predictions(objects=OBJECTS, shift_x: int = 0, prob: float = 1.0, image_ids=tuple(IMAGES)):
    """Model-contract outputs, one per image id: each object predicted (optionally shifted in x)."""
    predictions = []
    for image_id in image_ids:
        width, height = IMAGES[image_id]
        rows = [o for o in objects if o[0] == image_id]
        boxes = torch.zeros(len(rows), 4)  # [N, 4]
        masks = torch.zeros(len(rows), 1, height, width)  # [N, 1, H, W]
        for n, (_, _, x1, y1, x2, y2) in enumerate(rows):
            boxes[n] = torch.tensor([x1 + shift_x, y1, x2 + shift_x, y2], dtype=torch.float32)
            mask = rect_mask(image_id, x1 + shift_x, y1, x2 + shift_x, y2)
            masks[n, 0] = torch.from_numpy(mask).float() * prob
        predictions.append(
            {
                "boxes": boxes,
                "labels": torch.tensor([CAT_ID_TO_LABEL[o[1]] for o in rows], dtype=torch.int64),
                "scores": torch.linspace(0.9, 0.5, len(rows)),
                "masks": masks,
            }
        )
    return predictions


def test_perfect_predictions_score_one_everywhere():
    results = predictions_to_coco_results(make_predictions(), list(IMAGES), LABEL_TO_CAT_ID)
    metrics = evaluate_coco(make_gt(), results)
    for iou_type in ("bbox", "segm"):
        assert list(metrics[iou_type]) == list(STAT_NAMES)
        for name in STAT_NAMES:
            # AR1 keeps 1 detection per image AND category: category 3 has 2 objects in image 1, so it
            # recalls 1/2 there, category 7 recalls 2/2 -> (0.5 + 1) / 2
            expected = 0.75 if name == "AR1" else 1.0
            assert metrics[iou_type][name] == pytest.approx(expected), (iou_type, name)


def test_known_iou_gives_ap50_one_and_ap75_zero():
    # One 13 x 10 object; the prediction is shifted 3 px right: IoU = (10*10) / (16*10) = 0.625.
    objects = [(2, 7, 20, 10, 33, 20)]
    gt = make_gt(objects)
    predictions = make_predictions(objects, shift_x=3, image_ids=[2])
    results = predictions_to_coco_results(predictions, [2], LABEL_TO_CAT_ID)
    metrics = evaluate_coco(gt, results, image_ids=[2])
    for iou_type in ("bbox", "segm"):
        m = metrics[iou_type]
        assert m["AP50"] == pytest.approx(1.0)
        assert m["AP75"] == pytest.approx(0.0)
        # matched at IoU thresholds 0.50, 0.55, 0.60 out of ten -> 3/10
        assert m["AP"] == pytest.approx(0.3)
        assert m["AR1"] == pytest.approx(0.3)
        assert m["APs"] == pytest.approx(0.3)  # 130 px: small
        assert m["APm"] == -1.0 and m["APl"] == -1.0  # no such ground truth: kept as COCOeval's -1


def test_per_class_ap_by_hand():
    # Category 'seven' is predicted perfectly. Of category 'three' only the small 10x10 object of image 1
    # is predicted, shifted 3 px right (IoU 7*10 / 13*10 = 0.538), and its large object is missed.
    three_small = next(o for o in OBJECTS if o[1] == 3)
    sevens = [o for o in OBJECTS if o[1] == 7]
    predictions = make_predictions(sevens, image_ids=tuple(IMAGES))
    shifted = make_predictions([three_small], shift_x=3, image_ids=[1])[0]
    first = predictions[0]
    predictions[0] = {k: torch.cat([first[k], shifted[k]]) for k in first}
    results = predictions_to_coco_results(predictions, list(IMAGES), LABEL_TO_CAT_ID)
    table = per_class_ap(make_gt(), results)
    assert set(table) == {"bbox", "segm"}
    for iou_type in ("bbox", "segm"):
        assert table[iou_type]["seven"] == pytest.approx(1.0)
        # IoU 70/130 = 0.538: matched at 0.50 only; recall 1/2 -> precision 1 up to recall 0.5
        # (51 of 101 recall points) at one of ten thresholds
        assert table[iou_type]["three"] == pytest.approx(51 / 101 / 10)
    # the mean over the categories is COCO's AP
    metrics = evaluate_coco(make_gt(), results)
    assert metrics["segm"]["AP"] == pytest.approx(np.mean(list(table["segm"].values())))


def test_empty_results_score_zero_without_crash(capsys):
    gt = make_gt()
    capsys.readouterr()
    metrics = evaluate_coco(gt, [])
    for iou_type in ("bbox", "segm"):
        assert metrics[iou_type] == dict.fromkeys(STAT_NAMES, 0.0)
    assert capsys.readouterr().out == ""  # pycocotools' prints are silenced


def test_no_detections_from_the_model():
    predictions = [
        {
            "boxes": torch.zeros(0, 4),
            "labels": torch.zeros(0, dtype=torch.int64),
            "scores": torch.zeros(0),
            "masks": torch.zeros(0, 1, 60, 80),
        }
    ]
    assert predictions_to_coco_results(predictions, [2], LABEL_TO_CAT_ID) == []


def test_non_contiguous_category_ids_round_trip():
    results = predictions_to_coco_results(make_predictions(), list(IMAGES), LABEL_TO_CAT_ID)
    got = sorted((r["image_id"], r["category_id"], tuple(r["bbox"])) for r in results)
    expected = sorted((i, c, (x1, y1, x2 - x1, y2 - y1)) for i, c, x1, y1, x2, y2 in OBJECTS)
    assert got == expected
    json.dumps(results)  # RLE counts are str, so the results are JSON-ready
    bad = make_predictions(image_ids=[2])
    bad[0]["labels"] = torch.tensor([5])
    with pytest.raises(ValueError, match="labels \\[5\\]"):
        predictions_to_coco_results(bad, [2], LABEL_TO_CAT_ID)


def test_masks_are_thresholded_at_0_4():
    masks = torch.zeros(2, 1, 6, 8)
    masks[0, 0, 1:3, 2:5] = 0.45  # counts (> 0.4): 6 px
    masks[1, 0, 1:3, 2:5] = 0.35  # does not
    rles = encode_masks(masks, threshold=0.4)
    assert [int(mask_util.area(r)) for r in rles] == [6, 0]
    decoded = mask_util.decode(rles[0])
    assert decoded.shape == (6, 8) and decoded[1:3, 2:5].all()
    # the default threshold of predictions_to_coco_results is 0.4: probabilities of 0.45 score perfectly
    results = predictions_to_coco_results(make_predictions(prob=0.45), list(IMAGES), LABEL_TO_CAT_ID)
    assert evaluate_coco(make_gt(), results, iou_types=("segm",))["segm"]["AP"] == pytest.approx(1.0)


def test_bbox_only_predictions():
    predictions = make_predictions()
    for p in predictions:
        del p["masks"]
    results = predictions_to_coco_results(predictions, list(IMAGES), LABEL_TO_CAT_ID)
    assert all("segmentation" not in r for r in results)
    assert evaluate_coco(make_gt(), results, iou_types=("bbox",))["bbox"]["AP"] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="segmentation"):
        evaluate_coco(make_gt(), results, iou_types=("segm",))


def test_unknown_image_or_category_id_raises():
    results = predictions_to_coco_results(make_predictions(), list(IMAGES), LABEL_TO_CAT_ID)
    with pytest.raises(ValueError, match="image ids not in the ground truth: \\[99\\]"):
        evaluate_coco(make_gt(), results + [{**results[0], "image_id": 99}])
    with pytest.raises(ValueError, match="category ids not in the ground truth: \\[5\\]"):
        evaluate_coco(make_gt(), results + [{**results[0], "category_id": 5}])
    with pytest.raises(ValueError, match="image_ids not in the ground truth"):
        evaluate_coco(make_gt(), results, image_ids=[1, 42])


def test_image_subset_and_zero_annotation_id():
    # Only image 2 is predicted; evaluated on image 2 alone, it is perfect. Annotation ids start at 0,
    # which COCOeval would read as "unmatched": evaluate_coco renumbers them.
    results = predictions_to_coco_results(make_predictions(image_ids=[2]), [2], LABEL_TO_CAT_ID)
    metrics = evaluate_coco(make_gt(first_ann_id=0), results, image_ids=[2])
    assert metrics["segm"]["AP"] == pytest.approx(1.0)
    assert metrics["bbox"]["AP"] == pytest.approx(1.0)
    # on both images: category 3 finds 0 of 2 objects, category 7 finds 1 of 2 -> AR = (0 + 0.5) / 2
    assert evaluate_coco(make_gt(), results)["bbox"]["AR100"] == pytest.approx(0.25)


def test_files_and_table(tmp_path):
    results = predictions_to_coco_results(make_predictions(), list(IMAGES), LABEL_TO_CAT_ID)
    gt = make_gt()
    gt_path = tmp_path / "gt.json"
    gt_path.write_text(json.dumps(gt.dataset))
    results_path = save_results(results, tmp_path / "out" / "results.json")
    metrics = evaluate_coco(str(gt_path), str(results_path))
    assert metrics["bbox"]["AP"] == pytest.approx(1.0)
    metrics_path = save_metrics(metrics, tmp_path / "out" / "metrics.json")
    assert json.loads(metrics_path.read_text()) == metrics
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["metrics.json", "results.json"]

    table = format_table({"bbox": metrics["bbox"], "segm": {**metrics["segm"], "APl": -1.0}})
    lines = table.splitlines()
    assert lines[0].split() == ["type", *STAT_NAMES]
    assert lines[1].split() == ["bbox"] + ["100.0"] * 6 + ["75.0"] + ["100.0"] * 5
    assert lines[2].split() == ["segm"] + ["100.0"] * 5 + ["-", "75.0"] + ["100.0"] * 5
    with pytest.raises(FileNotFoundError):
        evaluate_coco(tmp_path / "missing.json", results)


def test_a_subset_scores_as_if_the_other_instances_and_their_detections_were_not_there():
    # Subset: the small object of image 1 and the object of image 2, predicted exactly; the other two
    # are predicted 6 px off (box IoU 0.74 and 0.89), so they miss the high IoU thresholds.
    subset, others = [OBJECTS[0], OBJECTS[3]], [OBJECTS[1], OBJECTS[2]]
    exact = predictions_to_coco_results(make_predictions(subset), list(IMAGES), LABEL_TO_CAT_ID)
    shifted = predictions_to_coco_results(make_predictions(others, shift_x=6), list(IMAGES), LABEL_TO_CAT_ID)
    gt = make_gt()  # annotation ids 1..4 in the order of OBJECTS
    metrics = evaluate_coco(gt, exact + shifted, ann_ids=[1, 4])
    assert metrics["segm"]["AP"] == pytest.approx(1.0) and metrics["bbox"]["AP"] == pytest.approx(1.0)
    # the other half: the same numbers as a ground truth holding only its instances, with only their
    # detections
    alone = evaluate_coco(make_gt(others), shifted)
    half = evaluate_coco(gt, exact + shifted, ann_ids=[2, 3])
    for iou_type in ("bbox", "segm"):
        assert half[iou_type] == pytest.approx(alone[iou_type]), iou_type
    assert alone["segm"]["AP"] < 1.0
    # COCO's ignore flag alone would leave the 6-px-off detections as false positives at IoU >= 0.9
    # (they match no kept instance and are too far from their own to be ignored): the subset of exact
    # detections would score below 1. The detections are attributed to their instances instead:
    assert detection_owners(gt, exact + shifted, "bbox") == [1, 4, 2, 3]


def test_detections_on_the_background_stay_in_every_subset():
    gt = make_gt()
    results = predictions_to_coco_results(make_predictions(), list(IMAGES), LABEL_TO_CAT_ID)
    background = {"image_id": 2, "category_id": 7, "score": 0.99, "bbox": [65.0, 52.0, 10.0, 5.0]}
    background["segmentation"] = encode_masks(rect_mask(2, 65, 52, 75, 57)[None], 0.5)[0]
    assert detection_owners(gt, [background], "segm") == [None]
    for ann_ids in ([1, 4], [2, 3]):
        assert evaluate_coco(gt, results, ann_ids=ann_ids)["segm"]["AP"] == pytest.approx(1.0)
        assert evaluate_coco(gt, results + [background], ann_ids=ann_ids)["segm"]["AP"] < 1.0
    with pytest.raises(ValueError, match="ann_ids not in the ground truth"):
        evaluate_coco(gt, results, ann_ids=[99])
