import csv
import re
import shutil

import numpy as np
import pytest
from PIL import Image

from study.config import Augmentation, Data, Split
from study.data import dataset as data
from study.errors import DataError

from .conftest import CLASSES, NEU, copy_slice, nested_copy


def test_class_folders_with_spaces_and_mixed_extensions(tmp_path):
    for name, ext in (("rolled in scale", ".png"), ("pitted surface", ".bmp")):
        folder = tmp_path / name
        folder.mkdir()
        for n in range(3):
            Image.new("L", (40, 40), color=n * 60).save(folder / f"img {n}{ext}")
    (tmp_path / "notes.txt").write_text("not an image")
    found = data.discover(tmp_path).files
    assert [f.label for f in found] == ["pitted surface"] * 3 + ["rolled in scale"] * 3
    loaded = data.load(tmp_path, 32)
    assert loaded.images.shape == (6, 32, 32, 3)
    assert loaded.class_names == ["pitted surface", "rolled in scale"]


def test_flat_folder_uses_neu_file_names(tmp_path):
    for name in CLASSES[:3]:
        for n in (1, 2, 10):
            shutil.copy(NEU / name / f"{name}_{n}.jpg", tmp_path)
    found = data.discover(tmp_path).files
    assert {f.label for f in found} == set(CLASSES[:3])
    # natural order: _2 before _10
    assert [f.path.name for f in found[:3]] == ["crazing_1.jpg", "crazing_2.jpg", "crazing_10.jpg"]


def test_the_full_neu_folder(neu):
    found = data.discover(neu).files
    assert len(found) == 1800
    assert sorted({f.label for f in found}) == CLASSES


def test_identical_files_always_share_a_split(neu, tmp_path):
    root = copy_slice(tmp_path, per_class=5)
    for n in (101, 105):  # byte-identical in NEU
        shutil.copy(neu / "patches" / f"patches_{n}.jpg", root / "patches")
    dataset = data.load(root, 32)
    twins = [
        i for i, p in enumerate(dataset.files) if p.name in ("patches_101.jpg", "patches_105.jpg")
    ]
    assert dataset.content_hashes[twins[0]] == dataset.content_hashes[twins[1]]
    for seed in range(20):
        parts = data.split(dataset, Split(val=0.2, test=0.2), seed)
        homes = {name for name, idx in parts.items() for i in twins if i in idx}
        assert len(homes) == 1


def test_split_is_stratified_disjoint_complete_and_seeded(neu_slice):
    dataset = data.load(neu_slice, 32)
    parts = data.split(dataset, Split(val=0.25, test=0.25), seed=3)
    everything = np.concatenate(list(parts.values()))
    assert sorted(everything) == list(range(len(dataset)))
    for name, expected in (("train", 6), ("val", 3), ("test", 3)):
        counts = np.bincount(dataset.labels[parts[name]], minlength=6)
        assert counts.tolist() == [expected] * 6
    again = data.split(dataset, Split(val=0.25, test=0.25), seed=3)
    other = data.split(dataset, Split(val=0.25, test=0.25), seed=4)
    assert all(np.array_equal(parts[k], again[k]) for k in parts)
    assert not np.array_equal(parts["val"], other["val"])
    moved = data.split(dataset, Split(val=0.25, test=0.25, test_seed=1), seed=3)
    assert not np.array_equal(parts["test"], moved["test"])


def test_no_seed_ever_trains_or_validates_on_a_test_image(neu_slice):
    dataset = data.load(neu_slice, 32)
    fractions = Split(val=0.25, test=0.25)
    test = data.split(dataset, fractions, seed=0)["test"]
    for seed in range(30):
        parts = data.split(dataset, fractions, seed)
        assert np.array_equal(parts["test"], test)
        assert not set(parts["train"]) & set(test) and not set(parts["val"]) & set(test)


def test_folds_validate_on_each_non_test_image_once_per_repeat(neu_slice):
    dataset = data.load(neu_slice, 32)
    fractions = Split(test=0.25, folds=3)
    test = data.split(dataset, fractions, seed=0)["test"]
    for repeat in range(2):
        folds = [data.split(dataset, fractions, 3 * repeat + fold) for fold in range(3)]
        validated = np.concatenate([parts["val"] for parts in folds])
        assert sorted(validated) == sorted(set(range(len(dataset))) - set(test))
        for parts in folds:
            assert np.array_equal(parts["test"], test)
            assert np.bincount(dataset.labels[parts["val"]], minlength=6).tolist() == [3] * 6
    first, second = (data.split(dataset, fractions, seed)["val"] for seed in (0, 3))
    assert not np.array_equal(first, second)  # another repeat shuffles the folds anew


def test_no_test_split(neu_slice):
    parts = data.split(data.load(neu_slice, 32), Split(val=0.2, test=0.0), seed=0)
    assert len(parts["test"]) == 0 and len(parts["val"]) > 0


def test_fingerprint_follows_content_not_paths(neu_slice, tmp_path):
    first = data.load(neu_slice, 32).fingerprint
    moved = shutil.copytree(neu_slice, tmp_path / "elsewhere")
    assert data.load(moved, 32).fingerprint == first
    (moved / "crazing" / "crazing_1.jpg").unlink()
    assert data.load(moved, 32).fingerprint != first


def test_unusual_pixel_formats_load(tmp_path):
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
    rgba = np.zeros((40, 40, 4), dtype=np.uint8)
    rgba[..., 0], rgba[..., 3] = 200, 128
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a" / "rgba.png")
    deep = (np.arange(1600, dtype=np.uint16).reshape(40, 40) * 40).astype(np.uint16)
    Image.fromarray(deep).save(tmp_path / "b" / "deep.png")
    assert Image.open(tmp_path / "b" / "deep.png").mode.startswith("I")
    loaded = data.load(tmp_path, 40)
    assert loaded.images.dtype == np.uint8
    assert loaded.images[0, ..., 0].mean() == pytest.approx(200, abs=1)
    gray = loaded.images[1, ..., 0].astype(float)
    assert gray.max() > 200 and gray.min() < 5  # 16-bit range rescaled, not clipped


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"", "empty file"),
        (b"this is text, not a picture", "cannot be decoded"),
        ("truncated", "cannot be decoded"),
    ],
)
def test_bad_files_stop_the_load_naming_the_file(neu_slice, content, expected):
    target = neu_slice / "crazing" / "bad.jpg"
    if content == "truncated":
        content = (neu_slice / "crazing" / "crazing_1.jpg").read_bytes()[:2000]
    target.write_bytes(content)
    with pytest.raises(DataError) as caught:
        data.load(neu_slice, 32)
    assert str(target) in str(caught.value) and expected in str(caught.value)
    skipping = data.load(neu_slice, 32, skip_bad_files=True)
    assert [p for p, _ in skipping.skipped] == [target]
    assert len(skipping) == 72


def test_layout_problems(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        data.discover(tmp_path / "absent")
    with pytest.raises(DataError, match="contains no images"):
        data.discover(tmp_path)
    (tmp_path / "one").mkdir()
    Image.new("L", (40, 40)).save(tmp_path / "one" / "x.png")
    with pytest.raises(DataError, match="only one class"):
        data.discover(tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="class folder .*empty contains no images"):
        data.discover(tmp_path)


def test_tiny_images_are_refused(tmp_path):
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        Image.new("L", (40, 40)).save(tmp_path / name / "ok.png")
    Image.new("L", (20, 40)).save(tmp_path / "a" / "tiny.png")
    with pytest.raises(DataError, match="tiny.png: image is 20x40 px, smaller than the 32 px"):
        data.load(tmp_path, 32)


def test_augmentation_is_seeded_bounded_and_changes_images(neu_slice):
    images = data.load(neu_slice, 48).images[:8]
    settings = Augmentation()
    first = data.augment(images, settings, np.random.default_rng(1))
    again = data.augment(images, settings, np.random.default_rng(1))
    other = data.augment(images, settings, np.random.default_rng(2))
    assert first.shape == (8, 48, 48, 3) and first.dtype == np.float32
    assert np.array_equal(first, again)
    assert not np.allclose(first, other)
    assert first.min() >= -1.0 and first.max() <= 1.0
    still = Augmentation(rotations=[0], horizontal_flip=False, shear=0, zoom=0)
    identity = data.augment(images, still, np.random.default_rng(1))
    np.testing.assert_allclose(identity, data.to_model_input(images), atol=1e-4)


def test_augmentation_rotates_by_the_allowed_angles():
    image = np.zeros((1, 33, 33, 3), dtype=np.uint8)
    image[0, 2:8, 14:19] = 255  # a bar near the top edge
    quarter = Augmentation(rotations=[90], horizontal_flip=False, shear=0, zoom=0)
    turned = data.augment(image, quarter, np.random.default_rng(0))[0, ..., 0]
    expected = data.to_model_input(np.rot90(image[0], k=1))[..., 0]  # counter-clockwise
    mirrored = data.to_model_input(np.rot90(image[0], k=-1))[..., 0]
    assert np.abs(turned - expected).mean() < np.abs(turned - mirrored).mean()
    assert np.abs(turned - expected).mean() < 0.05


def test_nested_class_folders_with_masks_beside_the_images(tmp_path):
    root = nested_copy(tmp_path / "tiles", per_class=4)
    found = data.discover(root, Data(exclude=["*.png"]))
    assert [f.path.relative_to(root).as_posix() for f in found.files[:4]] == [
        f"crazing/Imgs/exp_{n}.jpg" for n in (1, 2, 3, 4)
    ]
    assert [f.label for f in found.files] == [name for name in CLASSES[:3] for _ in range(4)]
    assert found.notices == [
        "data.include/exclude: using 13 of 25 image files (12 left out, for example "
        "crazing/Imgs/exp_1.png)",
        "ignored 1 image file outside the class folders (dataset.jpg): they belong to no class",
    ]
    included = data.discover(root, Data(include=["*.jpg"]))
    assert included.files == found.files
    loaded = data.load(root, 32, rules=Data(exclude=["*.png"]))
    assert loaded.class_sources() == [(name, 4, [f"{name}/Imgs"]) for name in CLASSES[:3]]


def test_the_fingerprint_covers_the_selection(tmp_path):
    root = nested_copy(tmp_path / "tiles", per_class=3)
    images = data.load(root, 32, rules=Data(exclude=["*.png"]))
    assert data.load(root, 32, rules=Data(include=["*.jpg"])).fingerprint == images.fingerprint
    with_masks = data.load(root, 32)  # masks are images too when no pattern leaves them out
    assert len(with_masks) == 2 * len(images)
    assert with_masks.fingerprint != images.fingerprint
    fewer = data.load(root, 32, rules=Data(exclude=["*.png", "exp_3.jpg"]))
    assert len(fewer) == len(images) - 3 and fewer.fingerprint != images.fingerprint


def test_patterns_with_a_slash_match_the_whole_relative_path(tmp_path):
    root = nested_copy(tmp_path / "tiles", per_class=2)
    two_classes = Data(include=["crazing/*.jpg", "PATCHES/*"], exclude=["*.png"])
    found = data.discover(root, two_classes).files
    assert {f.label for f in found} == {"crazing", "patches"} and len(found) == 4
    with pytest.raises(DataError, match="pattern 'Imgs/\\*' selects none of the 13 image files"):
        data.discover(root, Data(include=["Imgs/*"]))  # a path pattern starts at the root
    with pytest.raises(DataError, match=r"leave none of the 13 image files"):
        data.discover(root, Data(include=["*.png"], exclude=["*/Imgs/*"]))


def test_class_depth_merges_folders_of_one_name(tmp_path):
    root = tmp_path / "mvtec"
    layout = {"bottle/train/good": "crazing", "bottle/test/good": "inclusion"}
    layout |= {"bottle/test/crack": "patches", "bottle/ground_truth/crack": "scratches"}
    for folder, source in layout.items():
        (root / folder).mkdir(parents=True)
        for n in (1, 2, 3):
            shutil.copy(NEU / source / f"{source}_{n}.jpg", root / folder / f"{n:03d}.png")
    rules = Data(class_depth=3, exclude=["*/ground_truth/*"])
    loaded = data.load(root, 32, rules=rules)
    assert loaded.class_sources() == [
        ("crack", 3, ["bottle/test/crack"]),
        ("good", 6, ["bottle/test/good", "bottle/train/good"]),
    ]
    assert loaded.origin.startswith("class folders 3 levels below data.root")


def write_labels(path, rows, header=("file", "class")):
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)


def test_classes_from_a_labels_file(tmp_path):
    root = tmp_path / "severstal"
    (root / "train_images").mkdir(parents=True)
    rows = []
    for name, label in (("crazing", "1"), ("patches", "3"), ("scratches", "none")):
        for n in (1, 2, 3):
            shutil.copy(NEU / name / f"{name}_{n}.jpg", root / "train_images" / f"{name}{n}.jpg")
            rows.append([f"train_images/{name}{n}.jpg", label, "1 5"])
    write_labels(root / "train.csv", rows[1:], header=("ImageId", "ClassId", "EncodedPixels"))
    rules = Data(labels="train.csv", label_columns={"file": "ImageId", "class": "ClassId"})
    loaded = data.load(root, 32, rules=rules)
    assert loaded.class_names == ["1", "3", "none"]
    assert [p.name for p in loaded.files[:2]] == ["crazing2.jpg", "crazing3.jpg"]
    assert loaded.notices == [
        "ignored 1 image file that train.csv does not list (train_images/crazing1.jpg)"
    ]
    assert loaded.origin == f"labels file {root / 'train.csv'} (columns ImageId, ClassId)"
    relabelled = rows[1:-1] + [[rows[-1][0], "3", ""]]
    write_labels(root / "other.csv", relabelled, header=("ImageId", "ClassId", "EncodedPixels"))
    other = data.load(root, 32, rules=rules.model_copy(update={"labels": "other.csv"}))
    assert other.fingerprint != loaded.fingerprint  # same files, one class changed


@pytest.mark.parametrize(
    ("rows", "header", "expected"),
    [
        ([["crazing/crazing_1.jpg", "a"]], ("file", "label"), "no column 'class' (columns: file, "),
        (
            [["crazing/crazing_99.jpg", "a"]],
            ("file", "class"),
            "lists files that do not exist under",
        ),
        ([["crazing/crazing_1.jpg", " "]], ("file", "class"), "line 2: empty class"),
        (
            [["crazing/crazing_1.jpg", "a"], ["crazing/crazing_1.jpg", "b"]],
            ("file", "class"),
            "crazing/crazing_1.jpg is listed with two classes (a, b)",
        ),
    ],
)
def test_bad_labels_files(neu_slice, rows, header, expected):
    write_labels(neu_slice / "labels.csv", [*rows, ["patches/patches_1.jpg", "b"]], header)
    with pytest.raises(DataError, match=re.escape(expected)):
        data.discover(neu_slice, Data(labels="labels.csv"))


def test_a_missing_labels_file(neu_slice):
    with pytest.raises(DataError, match="data.labels: file .*absent.csv does not exist"):
        data.discover(neu_slice, Data(labels="absent.csv"))


ELPV = NEU.parent / "elpv"
# ELPV's counts from its SOURCE.md: defect probability -> images
ELPV_GRADES = {"0.0": 1508, "0.3333333333333333": 295, "0.6666666666666666": 106, "1.0": 715}
# functional below a defect probability of 0.5, defective above it; YAML gives the keys as floats
ELPV_BINARY = {0.0: "functional", 0.333: "functional", 0.667: "defective", 1.0: "defective"}
BY_POSITION = {"file": 0, "class": 1}


def classes_from(root, text: str | bytes, **rules) -> dict[str, str]:
    """Write `text` as root/labels.txt and discover: listed path -> class."""
    path = root / "labels.txt"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    found = data.discover(root, Data.model_validate({"labels": "labels.txt", **rules})).files
    return {item.path.relative_to(root).as_posix(): item.label for item in found}


LISTED = {f"{name}/{name}_{n}.jpg": name for name in CLASSES[:2] for n in (1, 2)}


@pytest.mark.parametrize(
    "separator", [",", ";", "\t", "runs of spaces"], ids=["comma", "semicolon", "tab", "spaces"]
)
def test_the_delimiter_is_sniffed(neu_slice, separator):
    def line(*fields: str) -> str:
        if separator == "runs of spaces":  # columns padded to a width, as ELPV's
            return " ".join(field.ljust(30) for field in fields).rstrip() + "\n"
        return separator.join(fields) + "\n"

    text = line("file", "class", "note")
    text += "".join(line(path, label, "seen") for path, label in LISTED.items())
    assert classes_from(neu_slice, text) == LISTED


def test_quoted_fields_keep_their_separators(neu_slice):
    text = 'file,class\n"crazing/crazing_1.jpg","oil, spot"\ncrazing/crazing_2.jpg,dent\n'
    assert classes_from(neu_slice, text) == {
        "crazing/crazing_1.jpg": "oil, spot",
        "crazing/crazing_2.jpg": "dent",
    }


@pytest.mark.parametrize("header", ["", "path class module\n", "ImageId ClassId Module\n"])
def test_columns_by_position_with_or_without_a_header(neu_slice, header):
    rows = "".join(f"{path}  {label}  mono\n" for path, label in LISTED.items())
    assert classes_from(neu_slice, header + rows, label_columns=BY_POSITION) == LISTED


def test_columns_by_position_in_any_order_extra_columns_ignored(neu_slice):
    rows = "".join(
        f"x;{label};{n % 2};{path};more\n" for n, (path, label) in enumerate(LISTED.items())
    )
    assert classes_from(neu_slice, rows, label_columns={"file": 3, "class": 1}) == LISTED
    by_third = classes_from(neu_slice, rows, label_columns={"file": 3, "class": 2})
    assert list(by_third.values()).count("1") == 2


def test_one_column_by_name_and_one_by_position(neu_slice):
    text = "image\tgrade\n" + "".join(f"{path}\t{label}\n" for path, label in LISTED.items())
    columns = {"file": 0, "class": "grade"}
    assert classes_from(neu_slice, text, label_columns=columns) == LISTED
    with pytest.raises(DataError, match=re.escape("no column 'class' (columns: image, grade)")):
        classes_from(neu_slice, text, label_columns={"file": 0})


def test_a_header_is_the_first_line_only_when_it_names_the_columns(neu_slice):
    rows = "".join(f"{path},{label}\n" for path, label in LISTED.items())
    with pytest.raises(
        DataError, match="no column 'file' or 'class' \\(columns: crazing/crazing_1"
    ):
        classes_from(neu_slice, rows)
    assert classes_from(neu_slice, "file,class\n" + rows) == LISTED


GRADES = {f"crazing/crazing_{n}.jpg": grade for n, grade in enumerate(ELPV_GRADES, 1)}


def grades_file() -> str:
    return "".join(f"{path}  {grade}  poly\n" for path, grade in GRADES.items())


@pytest.mark.parametrize(
    "class_map",
    [
        ELPV_BINARY,
        {0: "functional", 0.33: "functional", 0.67: "defective", 1: "defective"},
        {"0.0": "functional", "0.3333333333333333": "functional", "0.6666666666666666": "defective"}
        | {"1.0": "defective"},
    ],
    ids=["rounded to 3 decimals", "integers and 2 decimals", "verbatim"],
)
def test_class_map_matches_numbers_at_the_keys_precision(neu_slice, class_map):
    labels = classes_from(neu_slice, grades_file(), label_columns=BY_POSITION, class_map=class_map)
    assert labels == dict(zip(GRADES, ["functional"] * 2 + ["defective"] * 2, strict=True))


def test_class_map_matches_text_exactly_and_keeps_graded_classes(neu_slice):
    graded = {0: "intact", 0.333: "possibly", 0.667: "likely", 1: "defective"}
    labels = classes_from(neu_slice, grades_file(), label_columns=BY_POSITION, class_map=graded)
    assert labels == dict(zip(GRADES, ["intact", "possibly", "likely", "defective"], strict=True))
    text = "file,class\ncrazing/crazing_1.jpg,Oil\ncrazing/crazing_2.jpg,oil\n"
    with pytest.raises(DataError, match="line 3: value 'oil' is not in data.class_map"):
        classes_from(neu_slice, text, class_map={"Oil": "oil spot"})


@pytest.mark.parametrize(
    ("text", "rules", "expected"),
    [
        (  # an integer key matches its number only: 1 is not 0.6666666666666666
            grades_file(),
            {"label_columns": BY_POSITION, "class_map": {0: "ok", 1: "bad"}},
            "line 2: value '0.3333333333333333' is not in data.class_map (keys: 0, 1); add it",
        ),
        (
            grades_file(),
            {"label_columns": BY_POSITION, "class_map": ELPV_BINARY | {0.3: "unsure"}},
            "line 2: value '0.3333333333333333' matches data.class_map keys of different classes "
            "(0.333: functional, 0.3: unsure)",
        ),
        (  # a line that lost its separators
            grades_file().replace("crazing_3.jpg  0.6666666666666666  poly", "crazing_3.jpg0.67"),
            {"label_columns": BY_POSITION},
            "line 3: 1 field(s) separated by runs of whitespace "
            "(crazing/crazing_3.jpg0.67), no class column (field 1, counted from 0)",
        ),
        (
            "file;class\ncrazing/crazing_1.jpg;a\ncrazing/crazing_2.jpg\n",
            {},
            "line 3: 1 field(s) separated by semicolons (crazing/crazing_2.jpg), no class column",
        ),
        (
            "file,class\ncrazing/crazing_1.jpg,a\ncrazing/crazing_2.jpg," + "x" * 140_000 + "\n",
            {},
            "line 3: cannot be read as fields separated by commas (field larger than field limit",
        ),
        (
            b"file,class\ncrazing/crazing_1.jpg,a\ncrazing/caf\xe9.jpg,b\n",
            {},
            "line 3: byte 0xe9 is not UTF-8 text; save the file as UTF-8",
        ),
        ("\n \n", {}, "is empty; give one line per image: file, class"),
    ],
    ids=[
        "uncovered value",
        "ambiguous keys",
        "too few fields",
        "short row",
        "csv",
        "utf-8",
        "empty",
    ],
)
def test_bad_lines_name_the_file_and_the_line(neu_slice, text, rules, expected):
    with pytest.raises(DataError) as caught:
        classes_from(neu_slice, text, **rules)
    message = str(caught.value)
    assert message.startswith(f"data.labels {neu_slice / 'labels.txt'}")
    assert expected in message and "\n" not in message


@pytest.mark.parametrize(
    ("rules", "counts"),
    [
        ({}, ELPV_GRADES),
        ({"class_map": ELPV_BINARY}, {"defective": 106 + 715, "functional": 1508 + 295}),
        ({"label_columns": {"file": 0, "class": 2}}, {"mono": 1074, "poly": 1550}),
    ],
    ids=["four grades", "functional or defective", "module type"],
)
def test_elpv_labels_as_shipped(rules, counts):
    rules = {"labels": "labels.csv", "label_columns": BY_POSITION} | rules
    found = data.discover(ELPV, Data.model_validate(rules))
    labels = [item.label for item in found.files]
    assert len(labels) == 2624 and found.notices == []
    assert {label: labels.count(label) for label in sorted(set(labels))} == counts
