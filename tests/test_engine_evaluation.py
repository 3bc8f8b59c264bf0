"""Engine, evaluation.py: evaluate over a COCO dataset."""

from __future__ import annotations

from engine_toys import ToyDetector
from sipmask_ref import engine
from sipmask_ref.data.coco import CocoInstances


def test_evaluate_uses_the_datasets_category_ids(coco_files):
    dataset = CocoInstances(coco_files.ann_file, coco_files.image_dir)
    model = ToyDetector()
    model.train()
    results, metrics = engine.evaluate(model, dataset, "cpu", batch_size=2, progress=False)
    assert model.training  # the mode is restored
    assert len(results) == len(dataset)
    assert {r["category_id"] for r in results} == {dataset.label_to_cat_id[1]}
    assert {r["image_id"] for r in results} == {1, 2, 3}
    assert set(results[0]["segmentation"]) == {"size", "counts"}
    assert set(metrics) == {"bbox", "segm"} and len(metrics["segm"]) == 12
