"""COCO (bbox, segm) and YouTube-VIS (video) evaluation through pycocotools."""
