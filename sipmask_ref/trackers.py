"""§3.5 Single-stage video instance segmentation, inference side: linking detections across frames.

Paper, §3.5: "our SipMask extracts a tracking feature vector from the tracking feature maps at the
bounding-box center to represent each instance. The metric for matching the instances between
different frames is similar to MaskTrack R-CNN."

The embeddings come from tracking.py (TrackingBranch, embeddings_at_boxes); video/tracks.py runs these
pieces over a video, frame by frame:

    TrackMatcher              frame-by-frame matching against a memory of identities (the paper's)
    IouTracker                a baseline without embeddings (IoU with the previous frame only)
    VideoResultAccumulator    per-frame detections with ids -> YouTube-VIS video-level results
    count_id_switches         how often a ground-truth object changes predicted identity

Shape letters as in the package docstring, plus one: E = channels of the tracking embedding (512 in the
paper presets). Quantities without a letter (identities held in the tracker's memory, frames of a
video) are written out in words.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pycocotools.mask as mask_utils
import torch
import torch.nn.functional as F
from torch import Tensor
from torchvision.ops import box_iou

from .geometry import encode_mask, mask_iou

# ----------------------------------------------------------------------------------------------------
# Inference: the tracker
# ----------------------------------------------------------------------------------------------------


class TrackMatcher:
    """Frame-by-frame identity assignment with a memory of every identity seen in the video.

    Authors' matching score (from MaskTrack R-CNN), for detection i and memory identity k:

        S = log_softmax([0, e . M^T]) + 1.0 * log(det score) + 2.0 * IoU(box, memory box)
            + 10 * [same label]

    with a "new identity" column first that gets IoU 0 and label term 1. Per detection the argmax over
    the columns decides: column 0 creates a new identity; column k is taken only if S beats the best
    score any detection of this frame has reached for identity k so far, the earlier holder is then
    dropped (id -1), so each identity appears at most once per frame. (In the authors' code the earlier
    holder keeps the id in its own record, but the per-frame results are keyed by id and the later one
    overwrites it, so the effect is the same.) A matched identity's embedding and box are replaced by
    the current ones; its label is never updated. Identities are never forgotten within a video: an
    object that leaves and re-enters can be recovered by its embedding.

    Ablation switches (each is also reachable with a weight of 0):
        use_embedding=False: the embedding logits are all zero, so the first term is the constant
            -log(1 + number of identities) in every column and carries no information: decisions come
            from score, IoU and label only.
        use_score=False: drop log(det score). It is the same in every column of a detection, so it never
            changes the argmax; it only decides which of two detections competing for the same identity
            wins.
        use_iou=False / use_label=False: drop the IoU / same-label term.

    Detections are processed in the order given (the detector's order: descending score).
    reset() must be called at frame 0 of every video.
    """

    def __init__(
        self,
        score_weight: float = 1.0,
        iou_weight: float = 2.0,
        label_weight: float = 10.0,
        use_embedding: bool = True,
        use_score: bool = True,
        use_iou: bool = True,
        use_label: bool = True,
    ):
        self.score_weight = score_weight if use_score else 0.0
        self.iou_weight = iou_weight if use_iou else 0.0
        self.label_weight = label_weight if use_label else 0.0
        self.use_embedding = use_embedding
        self.reset()

    def reset(self) -> None:
        """Forget every identity (call at frame 0 of a video)."""
        self.embeds: Tensor | None = None  # [num_ids, E]
        self.boxes: Tensor | None = None  # [num_ids, 4]
        self.labels: Tensor | None = None  # [num_ids]

    @property
    def num_identities(self) -> int:
        return 0 if self.embeds is None else self.embeds.shape[0]

    def match_scores(self, embeds: Tensor, boxes: Tensor, labels: Tensor, scores: Tensor) -> Tensor:
        """The matching score S of every detection against [new, memory identities].

        Returns [N, 1 + num_identities]; column 0 is "new identity", column k is identity k - 1.
        """
        num_det = boxes.shape[0]
        # The three memory tensors are set together (_update_memory).
        if self.embeds is None or self.boxes is None or self.labels is None:
            return boxes.new_zeros(num_det, 1)  # empty memory: only the "new" column, score irrelevant
        if self.score_weight != 0 and bool((scores <= 0).any()):
            raise ValueError(f"TrackMatcher: detection scores must be > 0 (log is taken): {scores.tolist()}")
        num_ids = self.num_identities
        if self.use_embedding:
            similarity = embeds @ self.embeds.t()  # [N, num_ids]
        else:
            similarity = boxes.new_zeros(num_det, num_ids)
        logits = torch.cat([boxes.new_zeros(num_det, 1), similarity], dim=1)  # [N, 1 + num_ids]
        s = F.log_softmax(logits, dim=1)
        if self.score_weight != 0:
            s = s + self.score_weight * torch.log(scores)[:, None]
        iou = box_iou(boxes, self.boxes)  # [N, num_ids]
        same_label = (labels[:, None] == self.labels[None, :]).to(s.dtype)  # [N, num_ids]
        s = s + self.iou_weight * torch.cat([iou.new_zeros(num_det, 1), iou], dim=1)
        s = s + self.label_weight * torch.cat([same_label.new_ones(num_det, 1), same_label], dim=1)
        return s

    @torch.no_grad()
    def match(self, embeds: Tensor, boxes: Tensor, labels: Tensor, scores: Tensor) -> Tensor:
        """Assign an identity to each detection of the current frame and update the memory.

        Args:
            embeds: [N, E] tracking embeddings; boxes: [N, 4] xyxy (any fixed pixel frame, the same for
            the whole video); labels: [N] int64; scores: [N] detection scores in (0, 1].
        Returns:
            [N] int64 identity ids (0, 1, 2, ... in order of creation), -1 for a dropped detection.
        """
        embeds, boxes, scores = embeds.detach(), boxes.detach(), scores.detach()
        num_det = boxes.shape[0]
        ids = torch.full((num_det,), -1, dtype=torch.long, device=boxes.device)
        if num_det == 0:
            return ids
        s = self.match_scores(embeds, boxes, labels, scores)  # [N, 1 + num_ids]
        columns = s.argmax(dim=1).tolist()  # ties: the first column, i.e. "new" wins a tie
        num_old = self.num_identities
        best = [-math.inf] * num_old  # best score reached so far in this frame, per identity
        holder = [-1] * num_old  # which detection holds each identity in this frame
        new_rows: list[int] = []
        for i, col in enumerate(columns):
            if col == 0:
                ids[i] = num_old + len(new_rows)
                new_rows.append(i)
                continue
            k = col - 1
            score = float(s[i, col])
            if score > best[k]:
                if holder[k] >= 0:
                    ids[holder[k]] = -1  # the earlier, weaker detection of the same identity is dropped
                ids[i] = k
                best[k], holder[k] = score, i
        self._update_memory(embeds, boxes, labels, holder, new_rows)
        return ids

    def _update_memory(
        self, embeds: Tensor, boxes: Tensor, labels: Tensor, holder: list[int], new_rows: list[int]
    ) -> None:
        """Overwrite matched identities' embedding and box (not label); append the new identities."""
        if self.embeds is not None and self.boxes is not None:
            for k, i in enumerate(holder):
                if i >= 0:
                    self.embeds[k] = embeds[i]
                    self.boxes[k] = boxes[i]
        if new_rows:
            rows = torch.tensor(new_rows, device=boxes.device)
            add_e, add_b, add_l = embeds[rows].clone(), boxes[rows].clone(), labels[rows].clone()
            if self.embeds is None or self.boxes is None or self.labels is None:
                self.embeds, self.boxes, self.labels = add_e, add_b, add_l
            else:
                self.embeds = torch.cat([self.embeds, add_e])
                self.boxes = torch.cat([self.boxes, add_b])
                self.labels = torch.cat([self.labels, add_l])


class IouTracker:
    """Baseline without embeddings: greedy IoU matching to the previous frame's tracked boxes.

    Detections are visited by descending score; each takes the not-yet-taken identity of the previous
    frame with the highest IoU, if that IoU >= iou_threshold, and otherwise starts a new identity.
    Only the previous frame is remembered, so an object missed for one frame gets a new id. No detection
    is dropped. Same interface as TrackMatcher (the embeddings and labels are ignored).
    """

    def __init__(self, iou_threshold: float = 0.5):
        self.iou_threshold = iou_threshold
        self.reset()

    def reset(self) -> None:
        """Forget every identity (call at frame 0 of a video)."""
        self.prev_boxes: Tensor | None = None  # [number of tracks in the previous frame, 4]
        self.prev_ids: Tensor | None = None
        self.num_identities = 0

    @torch.no_grad()
    def match(self, embeds: Tensor | None, boxes: Tensor, labels: Tensor, scores: Tensor) -> Tensor:
        """[N] int64 identity ids for the current frame's detections (never -1)."""
        boxes = boxes.detach()
        num_det = boxes.shape[0]
        ids = torch.full((num_det,), -1, dtype=torch.long, device=boxes.device)
        if (
            self.prev_boxes is not None
            and self.prev_ids is not None
            and self.prev_boxes.shape[0] > 0
            and num_det > 0
        ):
            iou = box_iou(boxes, self.prev_boxes)  # [N, tracks of the previous frame]
            prev_ids = self.prev_ids
        else:
            iou = boxes.new_zeros(num_det, 0)
            prev_ids = ids.new_zeros(0)  # no previous tracks: nothing to take over
        taken = torch.zeros(iou.shape[1], dtype=torch.bool, device=boxes.device)
        for i in torch.argsort(scores, descending=True, stable=True).tolist():
            candidates = iou[i].masked_fill(taken, -1.0)
            if candidates.numel() > 0 and candidates.max() >= self.iou_threshold:
                j = int(candidates.argmax())
                taken[j] = True
                ids[i] = prev_ids[j]
            else:
                ids[i] = self.num_identities
                self.num_identities += 1
        self.prev_boxes, self.prev_ids = boxes.clone(), ids.clone()
        return ids


# ----------------------------------------------------------------------------------------------------
# Video-level results (YouTube-VIS format)
# ----------------------------------------------------------------------------------------------------


class VideoResultAccumulator:
    """Collect one video's tracked detections frame by frame, then emit YouTube-VIS results.

    As the authors' `results2json_videoseg`, one result per identity:
        {'video_id', 'category_id': majority vote of the frame labels (ties -> the smallest label),
         mapped to the dataset's own id by label_to_cat_id, 'score': mean of the frame scores,
         'segmentations': a list of length num_frames with an RLE dict where the identity is present
         and None where it is absent}.

    Args:
        video_id: the dataset's own video id (written as is).
        num_frames: frames of the video (length of every 'segmentations' list).
        label_to_cat_id: contiguous label 1..C -> dataset category id.
        mask_threshold: masks given as probabilities are binarised with > threshold (0.5 for VIS).
    """

    def __init__(
        self, video_id: int, num_frames: int, label_to_cat_id: Mapping[int, int], mask_threshold: float = 0.5
    ):
        self.video_id = video_id
        self.num_frames = num_frames
        self.label_to_cat_id = dict(label_to_cat_id)
        self.mask_threshold = mask_threshold
        # id -> {'labels': [...], 'scores': [...], 'segms': {frame: rle}}
        self.tracks: dict[int, dict[str, Any]] = {}
        self.frames_added: set[int] = set()

    def add_frame(self, frame_index: int, ids: Tensor, labels: Tensor, scores: Tensor, masks: Tensor) -> None:
        """Record one frame. ids [N] (-1 = dropped, skipped), labels [N], scores [N],
        masks [N, H, W] or [N, 1, H, W] as probabilities (float) or booleans."""
        if not 0 <= frame_index < self.num_frames:
            raise ValueError(
                f"video {self.video_id}: frame index {frame_index} outside 0..{self.num_frames - 1}"
            )
        if frame_index in self.frames_added:
            raise ValueError(f"video {self.video_id}: frame {frame_index} added twice")
        self.frames_added.add(frame_index)
        if masks.dim() == 4:
            masks = masks[:, 0]  # [N, H, W]
        binary = masks if masks.dtype == torch.bool else masks > self.mask_threshold  # [N, H, W]
        kept = [int(i) for i in ids.tolist() if i >= 0]
        if len(kept) != len(set(kept)):
            raise ValueError(f"video {self.video_id}, frame {frame_index}: an id appears twice: {kept}")
        for n, identity in enumerate(ids.tolist()):
            if identity < 0:
                continue
            label = int(labels[n])
            if label not in self.label_to_cat_id:
                raise ValueError(f"video {self.video_id}: label {label} has no entry in label_to_cat_id")
            track = self.tracks.setdefault(int(identity), {"labels": [], "scores": [], "segms": {}})
            track["labels"].append(label)
            track["scores"].append(float(scores[n]))
            track["segms"][frame_index] = encode_mask(binary[n])

    def results(self) -> list[dict[str, Any]]:
        """One YouTube-VIS result dict per identity, in order of identity id."""
        out = []
        for identity in sorted(self.tracks):
            track = self.tracks[identity]
            majority = int(np.bincount(np.array(track["labels"])).argmax())
            out.append(
                {
                    "video_id": self.video_id,
                    "category_id": self.label_to_cat_id[majority],
                    "score": float(np.mean(track["scores"])),
                    "segmentations": [track["segms"].get(f) for f in range(self.num_frames)],
                }
            )
        return out


# ----------------------------------------------------------------------------------------------------
# Identity switches
# ----------------------------------------------------------------------------------------------------


def _as_mask(region: Tensor | dict[str, Any]) -> Tensor:
    """An RLE dict or a mask tensor -> boolean [H, W]."""
    if isinstance(region, dict):
        rle = region
        if isinstance(rle.get("counts"), list):  # uncompressed RLE
            rle = mask_utils.frPyObjects(rle, *rle["size"])
        return torch.from_numpy(mask_utils.decode(rle).astype(bool))
    return region.bool() if region.dtype == torch.bool else region > 0.5


def _region_iou(a: Tensor | dict[str, Any], b: Tensor | dict[str, Any]) -> float:
    """IoU of two boxes ([4] xyxy tensors) or two masks (RLE dicts or [H, W] tensors)."""
    a_is_box = isinstance(a, Tensor) and a.dim() == 1
    b_is_box = isinstance(b, Tensor) and b.dim() == 1
    if a_is_box != b_is_box:
        raise ValueError("count_id_switches: a box was compared with a mask; give both tracks the same kind")
    if a_is_box and isinstance(a, Tensor) and isinstance(b, Tensor):  # both boxes (checked above)
        return float(box_iou(a[None].float(), b[None].float())[0, 0])
    ma = _as_mask(a)
    return mask_iou(ma, _as_mask(b).to(ma.device))


def count_id_switches(
    gt_tracks: Mapping[int, Sequence[Tensor | dict[str, Any] | None]],
    pred_tracks: Mapping[int, Sequence[Tensor | dict[str, Any] | None]],
    iou_threshold: float = 0.5,
) -> int:
    """Identity switches of one video, summed over its ground-truth objects.

    Definition used here: in every frame, each GT object present is matched to the predicted identity,
    present in that frame, with the highest IoU with it, provided that IoU >= iou_threshold (ties: the
    smallest predicted id); otherwise it is unmatched in that frame. A GT object's switches are the
    number of times its matched predicted id changes between consecutive *matched* frames (unmatched
    frames in between are skipped, so a miss followed by the same id is not a switch). This is simpler
    than CLEAR-MOT's IDSW (no one-to-one assignment between GT objects in a frame).

    Args:
        gt_tracks, pred_tracks: identity -> list over the video's frames of that identity's region, or
            None where absent. A region is a box ([4] xyxy tensor) or a mask ([H, W] tensor, or a COCO RLE
            dict such as VideoResultAccumulator's 'segmentations' entries). All lists have one length.
    Returns:
        the total number of switches (int).
    """
    lengths = {len(frames) for frames in list(gt_tracks.values()) + list(pred_tracks.values())}
    if len(lengths) > 1:
        raise ValueError(f"count_id_switches: tracks have different numbers of frames: {sorted(lengths)}")
    num_frames = lengths.pop() if lengths else 0
    switches = 0
    for gt_frames in gt_tracks.values():
        last_id: int | None = None
        for t in range(num_frames):
            gt_region = gt_frames[t]
            if gt_region is None:
                continue
            best_id, best_iou = None, iou_threshold
            for pred_id in sorted(pred_tracks):
                region = pred_tracks[pred_id][t]
                if region is None:
                    continue
                iou = _region_iou(gt_region, region)
                if iou > best_iou or (iou == best_iou and best_id is None):
                    best_id, best_iou = pred_id, iou
            if best_id is None:
                continue
            if last_id is not None and best_id != last_id:
                switches += 1
            last_id = best_id
    return switches
