"""Tests of the synthetic benchmark package (sipmask_ref/data/synthetic/__init__.py): make_data, exports."""

from sipmask_ref.data import synthetic as S
from sipmask_ref.data.synthetic import make_data

# The public names of data/synthetic.py before it became a package: notebooks and other modules import
# them from sipmask_ref.data.synthetic, so the package re-exports each one.
PUBLIC_NAMES = (
    "ADJACENCY_THRESHOLD",
    "CATEGORY_IDS",
    "COCO_AREA_BINS",
    "GENERATOR_VERSION",
    "SHAPE_CLASSES",
    "SPLITS",
    "Appearance",
    "Raster",
    "Shape",
    "SyntheticConfig",
    "SyntheticImage",
    "SyntheticVideo",
    "SyntheticVideoConfig",
    "Track",
    "adjacency_flags",
    "adjacency_stats",
    "annotation_fields",
    "area_bin",
    "compose",
    "crossing_track",
    "format_stats",
    "frames_as_coco",
    "generate_image_dataset",
    "generate_video_dataset",
    "inside_shape",
    "make_data",
    "paint",
    "place_shapes",
    "random_appearance",
    "random_background",
    "random_shape",
    "random_track",
    "rasterize",
    "reentering_track",
    "sample_image",
    "sample_video",
    "video_stats",
)


def test_every_name_public_before_the_split_is_exported_by_the_package():
    assert sorted(S.__all__) == sorted(PUBLIC_NAMES)
    for name in PUBLIC_NAMES:
        value = getattr(S, name)
        if callable(value):  # defined in one module of the package, not copied
            assert value.__module__.startswith("sipmask_ref.data.synthetic"), name


def test_make_data_generates_once_and_regenerates_when_parameters_change(tmp_path, capsys):
    kwargs = dict(
        root=tmp_path,
        num_train=4,
        num_val=2,
        num_train_videos=2,
        num_val_videos=1,
        num_frames=4,
        progress=False,
    )
    first = make_data(**kwargs)
    assert first["synthetic"]["generated"] and first["synthetic_video"]["generated"]
    assert first["synthetic"]["train_annotations"] == tmp_path / "synthetic/annotations/instances_train.json"
    assert first["synthetic_video"]["val_annotations"].exists()
    assert first["synthetic"]["stats"]["train"]["images"] == 4
    assert first["synthetic_video"]["stats"]["val"]["videos"] == 1
    assert "adjacency" in capsys.readouterr().out
    again = make_data(**kwargs, verbose=False)
    assert not again["synthetic"]["generated"] and not again["synthetic_video"]["generated"]
    changed = make_data(**{**kwargs, "seed": 1}, video=False, verbose=False)
    assert changed["synthetic"]["generated"] and "synthetic_video" not in changed
