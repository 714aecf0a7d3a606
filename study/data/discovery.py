"""Which image files a data root holds and their classes: class folders, NEU's flat
`<class>_<n>.<ext>` names, or a labels file (delimiter sniffed, header optional, values
optionally mapped to classes), with glob patterns choosing the files that count."""

from __future__ import annotations

import csv
import fnmatch
import io
import os
import re
import textwrap
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path, PurePosixPath

from study.errors import DataError
from study.schema.data import Data

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff")
EVERY_IMAGE = Data()  # no include or exclude patterns, no labels file, class folders at depth 1
_FLAT_NAME = re.compile(r"^(?P<label>.+)_(?P<number>\d+)$")
_PATTERNS = (
    "patterns match the path relative to data.root (a pattern without / the file name at any "
    "depth), ignoring case"
)
_DELIMITERS = ",\t;"  # a labels file's delimiters, in the sniffer's order of preference
_SNIFF_CHARS = 64 * 1024


@dataclass(frozen=True)
class ImageFile:
    path: Path
    label: str


@dataclass
class Discovery:
    """The images of a root with their classes, and what was left out, said in words."""

    files: list[ImageFile]
    origin: str  # where the classes come from
    notices: list[str] = field(default_factory=list)


def discover(root: str | Path, rules: Data = EVERY_IMAGE) -> Discovery:
    """Find the images under root and their classes, following the data section's include,
    exclude, class_depth and labels keys; raises DataError for unusable layouts."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(
            f"data root {root} does not exist or is not a folder; set data.root to a folder "
            "with one subfolder of images per class (or null for the embedded sample)"
        )
    images, folders = _walk(root)
    notices: list[str] = []
    selected = _select(root, images, rules, notices)
    if rules.labels is not None:
        found, origin = _from_labels(root, selected, rules, notices)
    elif folders:
        found, origin = _from_folders(root, images, selected, folders, rules.class_depth, notices)
    else:
        found, origin = _from_names(root, selected), "file names <class>_<n>.<ext>"
    if not found:
        raise DataError(
            f"data root {root} contains no images: expected one folder per class, or files "
            f"named <class>_<n>.<ext> with extension {', '.join(IMAGE_EXTENSIONS)}"
        )
    classes = {item.label for item in found}
    if len(classes) < 2:
        raise DataError(
            f"data root {root} has only one class ({classes.pop()}); a classifier needs images "
            "of at least 2 classes (one folder per class)"
        )
    ordered = sorted(found, key=lambda item: (item.label, _natural_key(_relative(root, item))))
    return Discovery(ordered, origin, notices)


def _walk(root: Path) -> tuple[list[str], list[str]]:
    """Image files and folders under root at any depth, as paths relative to root; hidden
    files and folders (a name starting with a dot) are left out."""
    images: list[str] = []
    folders: list[str] = []
    for top, dirs, names in os.walk(root, followlinks=True):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        here = Path(top).relative_to(root)
        folders += [(here / d).as_posix() for d in dirs]
        images += [
            (here / name).as_posix()
            for name in sorted(names)
            if not name.startswith(".") and Path(name).suffix.lower() in IMAGE_EXTENSIONS
        ]
    return images, folders


def _matches(relative: str, pattern: str) -> bool:
    """fnmatch, ignoring case; a pattern without / is matched against the file name alone."""
    target = relative if "/" in pattern else relative.rpartition("/")[2]
    return fnmatch.fnmatchcase(target.lower(), pattern.lower())


def _passes(relative: str, rules: Data) -> bool:
    return (not rules.include or any(_matches(relative, p) for p in rules.include)) and not any(
        _matches(relative, p) for p in rules.exclude
    )


def _select(root: Path, images: list[str], rules: Data, notices: list[str]) -> set[str]:
    """The images that data.include and data.exclude let through."""
    if not rules.include and not rules.exclude:
        return set(images)
    for pattern in rules.include:
        if images and not any(_matches(path, pattern) for path in images):
            raise DataError(
                f"data.include: pattern {pattern!r} selects none of the {_files(len(images))} "
                f"under {root}; {_PATTERNS}"
            )
    for pattern in rules.exclude:
        if not any(_matches(path, pattern) for path in images):
            notices.append(f"data.exclude: pattern {pattern!r} matches no image file")
    selected = {path for path in images if _passes(path, rules)}
    if images and not selected:
        raise DataError(
            f"data.include {rules.include} and data.exclude {rules.exclude} leave none of the "
            f"{_files(len(images))} under {root}; {_PATTERNS}"
        )
    left_out = sorted(set(images) - selected, key=_natural_key)
    if left_out:
        notices.append(
            f"data.include/exclude: using {len(selected)} of {_files(len(images))} "
            f"({len(left_out)} left out, for example {left_out[0]})"
        )
    return selected


def _from_folders(
    root: Path,
    images: list[str],
    selected: set[str],
    folders: list[str],
    depth: int,
    notices: list[str],
) -> tuple[list[ImageFile], str]:
    """The class is the name of the folder `depth` levels below root; images at any depth
    below it count."""
    class_dirs = [folder for folder in folders if folder.count("/") == depth - 1]
    for folder in class_dirs:
        if not any(path.startswith(folder + "/") for path in images):
            raise DataError(
                f"class folder {root / folder} contains no images (looked for "
                f"{', '.join(IMAGE_EXTENSIONS)} at any depth); add images or remove the folder"
            )
    found, outside = [], []
    for path in sorted(selected):
        parts = path.split("/")
        if len(parts) > depth:
            found.append(ImageFile(root / path, parts[depth - 1]))
        else:
            outside.append(path)
    if outside:
        notices.append(
            f"ignored {_files(len(outside))} outside the class folders ({outside[0]}"
            f"{', ...' if len(outside) > 1 else ''}): they belong to no class"
        )
    where = "under data.root" if depth == 1 else f"{depth} levels below data.root"
    return found, f"class folders {where}, images at any depth below them"


def _from_names(root: Path, selected: set[str]) -> list[ImageFile]:
    found = []
    for path in sorted(selected):
        match = _FLAT_NAME.match(Path(path).stem)
        if not match:
            raise DataError(
                f"{root / path} is not named <class>_<n>.<ext>; in a flat folder the class "
                "comes from the file name (or use one folder per class)"
            )
        found.append(ImageFile(root / path, match["label"]))
    return found


def _from_labels(
    root: Path, selected: set[str], rules: Data, notices: list[str]
) -> tuple[list[ImageFile], str]:
    """Classes from a labels file of file and class columns, file paths relative to root."""
    source = root / rules.labels  # an absolute labels path stays as it is
    if not source.is_file():
        raise DataError(
            f"data.labels: file {source} does not exist; give a CSV with a file and a class "
            "column (a relative path is taken from data.root)"
        )
    rows, separator = _label_rows(source)
    if not rows:
        raise DataError(f"data.labels {source} is empty; give one line per image: file, class")
    positions, header = _label_positions(source, rules.label_columns, rows[0][1])
    classes: dict[str, str] = {}
    for line, fields in rows[header:]:
        short = [key for key, at in positions.items() if at >= len(fields)]
        if short:
            raise DataError(
                f"data.labels {source} line {line}: {len(fields)} field(s) separated by "
                f"{separator} ({_shown(fields)}), no {' or '.join(short)} column (field "
                f"{positions[short[-1]]}, counted from 0); give every line a file and a class"
            )
        name = PurePosixPath(fields[positions["file"]].strip().replace("\\", "/")).as_posix()
        label = fields[positions["class"]].strip()
        if name == "." or not label:
            empty = "class" if name != "." else "file"
            raise DataError(
                f"data.labels {source} line {line}: empty {empty}; give every row a file and a "
                "class, or remove the row"
            )
        if rules.class_map is not None:
            label = _mapped_class(label, rules.class_map, f"data.labels {source} line {line}")
        if classes.setdefault(name, label) != label:
            raise DataError(
                f"data.labels {source}: {name} is listed with two classes ({classes[name]}, "
                f"{label}); give each file one class"
            )
    absent = [name for name in classes if not (root / name).is_file()]
    if absent:
        raise DataError(
            f"data.labels {source} lists files that do not exist under {root}: "
            f"{', '.join(absent[:3])}{', ...' if len(absent) > 3 else ''} ({len(absent)} in "
            "all); file paths are relative to data.root"
        )
    chosen = {name for name in classes if _passes(name, rules)}
    if len(chosen) < len(classes):
        notices.append(
            f"data.include/exclude: left out {len(classes) - len(chosen)} of the "
            f"{len(classes)} files listed in {source.name}"
        )
    unlisted = sorted(selected - set(classes), key=_natural_key)
    if unlisted:
        notices.append(
            f"ignored {_files(len(unlisted))} that {source.name} does not list "
            f"({unlisted[0]}{', ...' if len(unlisted) > 1 else ''})"
        )
    found = [ImageFile(root / name, label) for name, label in classes.items() if name in chosen]
    columns = rules.label_columns
    mapped = ", classes by data.class_map" if rules.class_map is not None else ""
    return found, f"labels file {source} (columns {columns['file']}, {columns['class']}{mapped})"


def _label_rows(source: Path) -> tuple[list[tuple[int, list[str]]], str]:
    """The non-blank rows of a labels file as (line number, fields), and the separator in words."""
    raw = source.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = raw[: error.start].count(b"\n") + 1
        raise DataError(
            f"data.labels {source} line {line}: byte {raw[error.start]:#04x} is not UTF-8 "
            "text; save the file as UTF-8"
        ) from None
    delimiter = _delimiter(text)
    if delimiter is None:
        rows = [(n, line.split()) for n, line in enumerate(text.split("\n"), 1)]
        return [(n, fields) for n, fields in rows if fields], "runs of whitespace"
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, skipinitialspace=True)
    separator = {",": "commas", ";": "semicolons", "\t": "tabs"}[delimiter]
    rows, start = [], 1
    try:
        for fields in reader:
            if any(field.strip() for field in fields):
                rows.append((start, fields))
            start = reader.line_num + 1  # a quoted field may span lines
    except csv.Error as error:
        raise DataError(
            f"data.labels {source} line {start}: cannot be read as fields separated by "
            f"{separator} ({error}); correct the line"
        ) from None
    return rows, separator


def _delimiter(text: str) -> str | None:
    """The sniffer's choice among comma, semicolon and tab; when the lines disagree (a broken
    line in a short file), the one the first line holds most often; None when the first line
    holds none of them: runs of whitespace separate the fields (ELPV's layout)."""
    sample = text[:_SNIFF_CHARS]
    try:
        return csv.Sniffer().sniff(sample.rpartition("\n")[0] or sample, _DELIMITERS).delimiter
    except csv.Error:
        first = next((line for line in text.split("\n") if line.strip()), "")
        delimiter = max(_DELIMITERS, key=first.count)
        return delimiter if delimiter in first else None


def _label_positions(
    source: Path, columns: dict[str, str | int], first: list[str]
) -> tuple[dict[str, int], int]:
    """Each column's position, and 1 when the first row is a header (0 when it is data).

    A column given by name needs a header: the first row must hold the name. With both columns
    given by position, the first row is a header when its file field is no image file name."""
    header = [field.strip() for field in first]
    names = [column for column in columns.values() if isinstance(column, str)]
    missing = [name for name in names if name not in header]
    if missing:
        raise DataError(
            f"data.labels {source}: no column {' or '.join(map(repr, missing))} (columns: "
            f"{_shown(header)}); name the columns with data.label_columns: {{file: ..., "
            "class: ...}, or give their positions counted from 0 when the file has no header, "
            "{file: 0, class: 1}"
        )
    positions = {
        key: header.index(column) if isinstance(column, str) else column
        for key, column in columns.items()
    }
    if names:
        return positions, 1
    file_field = header[positions["file"]] if positions["file"] < len(header) else ""
    is_data = PurePosixPath(file_field).suffix.lower() in IMAGE_EXTENSIONS
    return positions, int(max(positions.values()) < len(header) and not is_data)


def _shown(fields: list[str]) -> str:
    """Fields for an error line: on one line (a quoted field may span lines), and short."""
    return textwrap.shorten(", ".join(fields), width=160, placeholder=" ...")


def _mapped_class(value: str, class_map: dict[str, str], where: str) -> str:
    """The class data.class_map gives a label value; `where` names the line for errors."""
    classes = {key: label for key, label in class_map.items() if _key_matches(key, value)}
    if len(set(classes.values())) > 1:
        raise DataError(
            f"{where}: value {value!r} matches data.class_map keys of different classes "
            f"({', '.join(f'{key}: {label}' for key, label in classes.items())}); give keys "
            "that tell the values apart"
        )
    if not classes:
        raise DataError(
            f"{where}: value {value!r} is not in data.class_map (keys: "
            f"{', '.join(class_map)}); add it to data.class_map (a number matches a numeric key "
            "within half a unit of the key's last decimal) or correct the line"
        )
    return next(iter(classes.values()))


def _key_matches(key: str, value: str) -> bool:
    """data.class_map's rule: a number matches a numeric key within half a unit of the key's
    last decimal (0.333 matches 0.3333333333333333), an integer key matches that number only
    (1 matches 1.0, not 0.6666666666666666); other text matches itself."""
    target, number = _number(key), _number(value)
    if target is None or number is None:
        return key == value
    places = -target.as_tuple().exponent
    if places <= 0:
        return number == target
    return abs(number - target) * 2 <= Decimal(1).scaleb(-places)


def _number(text: str) -> Decimal | None:
    try:
        number = Decimal(text)
    except InvalidOperation:
        return None
    return number if number.is_finite() else None


def _files(count: int) -> str:
    return f"{count} image file" + ("" if count == 1 else "s")


def _relative(root: Path, item: ImageFile) -> str:
    return item.path.relative_to(root).as_posix()


def _natural_key(name: str) -> list:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]
