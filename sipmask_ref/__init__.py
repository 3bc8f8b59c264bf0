"""sipmask_ref: a reference implementation of SipMask (Cao et al., ECCV 2020).

"SipMask: Spatial Information Preservation for Fast Image and Video Instance Segmentation".
One paper section, one file:

    backbone.py                 §3    ResNet + FPN, P3-P7
    fcos.py                     §3    FCOS points, target assignment, box decoding
    spatial_preservation.py     §3.1  feature alignment (deformable conv) + spatial coefficients
    basis_masks.py              §3.2  contextual basis masks from P3-P5
    spatial_mask_prediction.py  §3.3  M_i = sigmoid(B x C_i), pruned per sub-region, summed
    losses.py                   §3.4  focal, IoU, centerness, mask alignment weighting loss
    head.py, model.py           the head and the whole detector (torchvision detection contract)
    model_input.py              the detector's input preparation: resize, normalise, pad to 32
    inference.py                NMS / Fast NMS, masks pasted back to the image
    tracking.py, trackers.py    §3.5  tracking branch and loss; the matcher used frame by frame
    video_model.py              §3.5  SipMask-VIS: the image model + the tracking branch

Around them, importing downward only (docs/ARCHITECTURE.md draws the storeys): config.py, files.py,
geometry.py, checkpoints.py (foundations); data/ (COCO, YouTube-VIS, the synthetic benchmark); eval/
(COCO and video AP, the leak measure); engine/ (training loop, checkpoints, distributed, evaluation);
helpers (cli_common, workspace, viz, explorer, explorer_maps, dataset_check, export); experiments
(reproduce/, compare/, video/, leak_table); the command line (cli.py, commands/) and tutorial.py.

Shape letters, used in every shape comment of the package:

    B  images in a batch            L  pyramid levels (P3-P7: 5)
    P  points (locations) over all levels of one image
    G  ground-truth instances       N  detections / positive samples
    M  basis masks (m in the paper) Q  sub-regions (k_h x k_w, 4 for 2x2)
    C  classes (foreground only)    H x W  map height x width
    D  channels of a feature map

Boxes are (x1, y1, x2, y2) in pixels of the map they refer to; labels are 1..C, 0 is background.
The video files (§3.5) add E, the channels of the tracking embedding (tracking.py, trackers.py).
"""

__version__ = "0.1.0"

from sipmask_ref.config import PRESETS, SipMaskConfig, preset
from sipmask_ref.model import SipMask
from sipmask_ref.spatial_mask_prediction import assemble_masks

__all__ = ["PRESETS", "SipMask", "SipMaskConfig", "__version__", "assemble_masks", "preset"]
