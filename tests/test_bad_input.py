"""Bad input stops `study train` and `study sweep` before any work is done: one line on stderr
naming the file or key and what would be valid, exit code 2, and the MLflow store and the
state folder exactly as they were (a fresh store is not even created).

In-process through `cli.main`, so each case takes well under a second once TensorFlow is
imported. docs/troubleshooting.md lists the same cases.

The other exit codes follow: work that fails prints one line and exits 1, a server that cannot
start one line and 2, and Ctrl-C (or SIGTERM) exits 130, `study ui` included."""

from __future__ import annotations

import hashlib
import http.server
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from mlflow.tracking import MlflowClient
from PIL import Image

from study import cli
from study.errors import ServerError, TrainingFailed, WorkersLost, WorkFailed
from study.serving.export import ExportFailed
from study.tracking import server
from study.tracking.store import Store

from .conftest import REPO, wait_for_health

SMOKE = str(REPO / "search_spaces" / "smoke.yaml")

CASES = [
    "missing data root",
    "empty data root",
    "class folder with no images",
    "only one class",
    "zero-byte image",
    "truncated JPEG",
    "JPEG header then garbage",
    "text file named .jpg",
    "image smaller than 32 px",
    "include pattern that matches nothing",
    "patterns that leave no image",
    "labels file missing",
    "labels CSV without the class column",
    "labels CSV lists a missing file",
    "labels CSV with an empty class",
    "labels CSV gives a file two classes",
    "labels file without a header, columns by name",
    "labels value not in class_map",
    "labels line with too few fields",
    "labels file not UTF-8",
    "unknown label_columns key",
    "class_depth 0",
    "unknown feature cache runtime",
    "unknown YAML key",
    "wrong type",
    "empty choice list",
    "range with min > max",
    "unknown fine-tuning cut",
    "split fractions sum to 1",
    "split fractions sum above 1",
    "tracking server unreachable",
    "tracking URI not an MLflow server",
    "tracking URI a plain folder",
    "weights file missing",
    "config file missing",
]


# Labels as ELPV ships them: whitespace-separated, no header; path, defect probability, module.
ELPV_LIKE_LINES = (
    b"crazing/crazing_1.jpg  0.0                 mono\n"
    b"patches/patches_1.jpg  1.0                 mono\n"
    b"patches/patches_2.jpg  0.3333333333333333  poly\n"
)
BY_POSITION = "{file: 0, class: 1}"
# case -> (a line after ELPV_LIKE_LINES, data.label_columns, what the error line says)
ELPV_LIKE = {
    "labels file without a header, columns by name": (
        b"",
        "{file: file, class: class}",
        "no column 'file' or 'class' (columns: crazing/crazing_1.jpg, 0.0, mono); name the",
    ),
    "labels value not in class_map": (
        b"patches/patches_3.jpg  0.6666666666666666  poly\n",
        BY_POSITION,
        "line 4: value '0.6666666666666666' is not in data.class_map (keys: 0, 0.333, 1)",
    ),
    "labels line with too few fields": (
        b"patches/patches_3.jpg\n",
        BY_POSITION,
        "line 4: 1 field(s) separated by runs of whitespace (patches/patches_3.jpg), no class",
    ),
    "labels file not UTF-8": (
        b"patches/\xe9.jpg  1.0  mono\n",
        BY_POSITION,
        "line 4: byte 0xe9 is not UTF-8 text",
    ),
}


def make_case(name: str, tmp_path: Path, root: Path) -> tuple[str, list[str], str | None, list]:
    """(config file, --set overrides, tracking URI or None for the test's stores, texts the
    error line must contain)."""
    config, sets, uri = SMOKE, [f"data.root={root}", "data.image_size=32"], None
    sample = root / "crazing" / "crazing_1.jpg"
    if name == "missing data root":
        sets[0] = f"data.root={tmp_path / 'nowhere'}"
        expected = [f"data root {tmp_path / 'nowhere'} does not exist", "set data.root to a"]
    elif name == "empty data root":
        (tmp_path / "empty").mkdir()
        sets[0] = f"data.root={tmp_path / 'empty'}"
        expected = [f"{tmp_path / 'empty'} contains no images", "one folder per class"]
    elif name == "class folder with no images":
        (root / "oil spots").mkdir()
        expected = [f"class folder {root / 'oil spots'} contains no images", "add images or"]
    elif name == "only one class":
        for folder in root.iterdir():
            if folder.name != "crazing":
                shutil.rmtree(folder)
        expected = [f"{root} has only one class (crazing)", "at least 2 classes"]
    elif name == "zero-byte image":
        (root / "patches" / "zero.jpg").write_bytes(b"")
        expected = [f"{root / 'patches' / 'zero.jpg'}: empty file", "data.skip_bad_files: true"]
    elif name == "truncated JPEG":
        (root / "patches" / "cut.jpg").write_bytes(sample.read_bytes()[:1500])
        expected = [f"{root / 'patches' / 'cut.jpg'}: cannot be decoded", "truncated"]
        expected.append("data.skip_bad_files: true")
    elif name == "JPEG header then garbage":
        (root / "patches" / "patches_1.jpg").write_bytes(b"\xff\xd8\xff garbage")
        expected = [f"{root / 'patches' / 'patches_1.jpg'}: cannot be decoded"]
        expected.append("data.skip_bad_files: true")
    elif name == "text file named .jpg":
        (root / "patches" / "notes.jpg").write_text("not a picture")
        expected = [f"{root / 'patches' / 'notes.jpg'}: cannot be decoded", "no image format"]
        expected.append("data.skip_bad_files: true")
    elif name == "image smaller than 32 px":
        Image.new("L", (20, 40)).save(root / "patches" / "tiny.png")
        expected = [f"{root / 'patches' / 'tiny.png'}: image is 20x40 px", "32 px minimum"]
        expected.append("data.skip_bad_files: true")
    elif name == "include pattern that matches nothing":
        sets.append('data.include=["*.bmp"]')
        expected = [
            f"data.include: pattern '*.bmp' selects none of the 72 image files under {root}"
        ]
        expected.append("relative to data.root")
    elif name == "patterns that leave no image":
        sets += ['data.include=["*.jpg"]', 'data.exclude=["*_?.jpg", "*_??.jpg"]']
        expected = ["data.include ['*.jpg'] and data.exclude ['*_?.jpg', '*_??.jpg'] leave none"]
    elif name == "labels file missing":
        sets.append("data.labels=labels.csv")
        expected = [f"data.labels: file {root / 'labels.csv'} does not exist", "a class column"]
    elif name.startswith("labels CSV"):
        rows = {
            "labels CSV without the class column": "file,label\ncrazing/crazing_1.jpg,a\n",
            "labels CSV lists a missing file": "file,class\ncrazing/absent.jpg,a\n",
            "labels CSV with an empty class": "file,class\ncrazing/crazing_1.jpg,a\nb.jpg,\n",
            "labels CSV gives a file two classes": "file,class\nx/1.jpg,a\nx/1.jpg,b\n",
        }[name]
        (root / "labels.csv").write_text(rows)
        sets.append("data.labels=labels.csv")
        expected = [f"data.labels {root / 'labels.csv'}"]
        expected.append(
            {
                "labels CSV without the class column": "no column 'class' (columns: file, label)",
                "labels CSV lists a missing file": "crazing/absent.jpg (1 in all)",
                "labels CSV with an empty class": "line 3: empty class",
                "labels CSV gives a file two classes": "x/1.jpg is listed with two classes (a, b)",
            }[name]
        )
    elif name in ELPV_LIKE:
        line, columns, text = ELPV_LIKE[name]
        (root / "labels.txt").write_bytes(ELPV_LIKE_LINES + line)
        sets += ["data.labels=labels.txt", f"data.label_columns={columns}"]
        sets.append("data.class_map={0: functional, 0.333: functional, 1: defective}")
        expected = [f"data.labels {root / 'labels.txt'}", text]
    elif name == "unknown label_columns key":
        sets.append("data.label_columns={image: ImageId}")
        expected = ["data.label_columns: unknown key 'image'; valid keys: file, class"]
    elif name == "class_depth 0":
        sets.append("data.class_depth=0")
        expected = ["data.class_depth: Input should be greater than or equal to 1 (got 0)"]
    elif name == "unknown feature cache runtime":
        sets.append("features.runtime=onnx")
        expected = ["features.runtime: Input should be 'tensorflow', 'onnxruntime', 'openvino'"]
        expected.append("(got 'onnx')")
    elif name == "unknown YAML key":
        config = str(tmp_path / "study.yaml")
        Path(config).write_text(
            Path(SMOKE).read_text().replace("  dropout:", "  colour: blue\n  dropout:")
        )
        expected = [f"{config}: model.colour: unknown key", "valid keys here: activation"]
    elif name == "wrong type":
        config = str(tmp_path / "study.yaml")
        Path(config).write_text(Path(SMOKE).read_text().replace("epochs: 10", "epochs: ten"))
        expected = [f"{config}: frozen.epochs: Input should be a valid integer", "(got 'ten')"]
    elif name == "empty choice list":
        sets.append("hyperparameters.model.activation.values=[]")
        expected = ["hyperparameters.model.activation.values: List should have at least 1 item"]
    elif name == "range with min > max":
        sets.append("hyperparameters={model.dropout: {type: float, min: 0.5, max: 0.1, step: 0.1}}")
        expected = ["hyperparameters.model.dropout: min (0.5) must be below max (0.1)"]
    elif name == "unknown fine-tuning cut":
        sets.append("fine_tune.trainable.from=normal_13")
        expected = ["fine_tune.trainable.from: not a NASNet-Mobile cell; valid cells, first to"]
        expected.append("reduce_8, normal_9, normal_10, normal_11, normal_12 (got 'normal_13')")
    elif name == "split fractions sum to 1":
        sets += ["data.split.val=0.5", "data.split.test=0.5"]
        expected = ["data.split: val + test must sum below 1", "(got 0.5 + 0.5 = 1)"]
    elif name == "split fractions sum above 1":
        sets += ["data.split.val=0.6", "data.split.test=0.7"]
        expected = ["data.split: val + test must sum below 1", "(got 0.6 + 0.7 = 1.3)"]
    elif name == "tracking server unreachable":
        uri = f"http://127.0.0.1:{server.free_port()}"  # nothing listens there
        expected = [f"tracking server {uri} cannot be reached", "--tracking-uri"]
        expected.append("http(s)://HOST:PORT of a running MLflow tracking server")
    elif name == "tracking URI not an MLflow server":
        uri = not_mlflow_server()
        expected = [f"{uri} does not answer like an MLflow tracking server", "HTTP 404"]
    elif name == "tracking URI a plain folder":
        uri = str(tmp_path / "runs")
        expected = [f"tracking URI {uri}: MLflow 3 does not accept a plain folder"]
        expected.append("use sqlite:///PATH/mlflow.db or an http(s):// tracking server")
    elif name == "weights file missing":
        sets.append(f"model.weights={tmp_path / 'nasnet.h5'}")
        expected = [f"model.weights: file {tmp_path / 'nasnet.h5'} does not exist"]
        expected.append("give imagenet, none, or the path of a NASNet-Mobile")
    elif name == "config file missing":
        config = str(tmp_path / "absent.yaml")
        expected = [f"config file {config} does not exist"]
    else:
        raise AssertionError(name)
    return config, sets, uri, expected


def not_mlflow_server() -> str:
    """An HTTP server that answers 404 to everything, in a daemon thread."""

    class NotFound(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - the standard library's name
            self.send_error(404)

        def log_message(self, *args):
            pass

    httpd = http.server.HTTPServer(("127.0.0.1", 0), NotFound)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{httpd.server_address[1]}"


@pytest.fixture(scope="module")
def existing_store(tmp_path_factory) -> tuple[str, Path]:
    """A store that already holds the smoke experiment with one FINISHED run."""
    database = tmp_path_factory.mktemp("existing") / "mlflow.db"
    store = Store(f"sqlite:///{database}")
    experiment = store.experiment("smoke")
    with store.run(experiment, "earlier", {"run_type": "train"}) as run_id:
        store.log(run_id, metrics=[("test_accuracy", 0.9, 0)])
    return store.uri, database


def snapshot(uri: str, database: Path) -> tuple[str, list[tuple[str, str]]]:
    runs = MlflowClient(uri).search_runs(
        [e.experiment_id for e in MlflowClient(uri).search_experiments()]
    )
    return hashlib.sha256(database.read_bytes()).hexdigest(), sorted(
        (r.info.run_id, r.info.status) for r in runs
    )


@pytest.mark.parametrize("command", ["train", "sweep"])
@pytest.mark.parametrize("name", CASES)
def test_bad_input_stops_with_one_line_exit_2_and_the_store_untouched(
    name, command, tmp_path, neu_slice, existing_store, capsys, monkeypatch
):
    monkeypatch.chdir(tmp_path)  # a default store created by mistake would appear here
    config, sets, uri, expected = make_case(name, tmp_path, neu_slice)
    existing_uri, existing_db = existing_store
    fresh_db = tmp_path / "fresh" / "mlflow.db"
    state = tmp_path / "state"
    before = snapshot(existing_uri, existing_db)
    assert [status for _, status in before[1]] == ["FINISHED"]
    targets = [uri] if uri else [f"sqlite:///{fresh_db}", existing_uri]
    for target in targets:
        args = [command, config, "--tracking-uri", target, "--state-dir", str(state)]
        for item in sets:
            args += ["--set", item]
        assert cli.main(args) == 2
        error = capsys.readouterr().err
        assert error.startswith("error: ") and error.count("\n") == 1, error
        for text in expected:
            assert text in error, (text, error)
        assert not fresh_db.exists() and not fresh_db.parent.exists()
        assert not state.exists() and not (tmp_path / "mlruns").exists()
        assert snapshot(existing_uri, existing_db) == before


def test_rgba_and_16_bit_pngs_are_used_not_refused(neu_slice, tmp_path, capsys):
    rgba = np.zeros((48, 48, 4), dtype=np.uint8)
    rgba[..., 0], rgba[..., 3] = 200, 100
    Image.fromarray(rgba, "RGBA").save(neu_slice / "patches" / "rgba.png")
    deep = (np.arange(48 * 48, dtype=np.uint32).reshape(48, 48) * 28).astype(np.uint16)
    Image.fromarray(deep).save(neu_slice / "scratches" / "deep.png")
    uri = f"sqlite:///{tmp_path}/m.db"
    args = ["train", SMOKE, "--tracking-uri", uri, "--state-dir", str(tmp_path / "s"), "-q"]
    for item in (f"data.root={neu_slice}", "data.image_size=32", "frozen.epochs=1"):
        args += ["--set", item]
    assert cli.main([*args, "--set", "fine_tune.epochs=0"]) == 0, capsys.readouterr().err
    (run,) = MlflowClient(uri).search_runs(["1"])
    assert run.info.status == "FINISHED"
    assert run.data.params["dataset.images"] == "74"
    assert run.data.tags["skipped_files"] == "0"


def test_failed_training_prints_one_line_exits_1_and_ends_its_run_failed(
    neu_slice, tmp_path, capsys, monkeypatch
):
    def diverge(*args, **kwargs):  # what `training.train` raises when the loss turns NaN
        raise TrainingFailed("frozen phase: loss became nan at batch 3")

    monkeypatch.setattr("study.training.train.train", diverge)
    uri = f"sqlite:///{tmp_path}/m.db"
    args = ["train", SMOKE, "--tracking-uri", uri, "--state-dir", str(tmp_path / "s"), "-q"]
    for item in (f"data.root={neu_slice}", "data.image_size=32", "features.cache=false"):
        args += ["--set", item]
    assert cli.main(args) == 1
    error = capsys.readouterr().err  # after any lines of MLflow's about creating the new store
    assert error.splitlines()[-1] == "training failed: frozen phase: loss became nan at batch 3"
    assert error.count("training failed") == 1
    assert "Traceback" not in error
    (run,) = MlflowClient(uri).search_runs(["1"])
    assert run.info.status == "FAILED"


@pytest.mark.parametrize(
    "failure, line",
    [
        (TrainingFailed("loss became nan"), "training failed: loss became nan"),
        (WorkersLost("worker1 died 4 times"), "sweep failed: worker1 died 4 times"),
        (ExportFailed("max abs difference 0.2"), "export failed: max abs difference 0.2"),
    ],
)
def test_every_kind_of_failed_work_exits_1_with_one_line_naming_it(
    failure, line, capsys, monkeypatch
):
    assert isinstance(failure, WorkFailed)

    def fail(self, args):
        raise failure

    monkeypatch.setattr(cli.Report, "run", fail)
    assert cli.main(["report", "smoke"]) == 1
    assert capsys.readouterr().err == line + "\n"


def test_a_ui_on_a_port_in_use_says_so_in_one_line_and_exits_2(tmp_path, capsys):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        args = ["ui", "--port", str(port), "--tracking-uri", f"sqlite:///{tmp_path}/m.db"]
        assert cli.main(args) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1, error
    assert error.startswith(f"error: cannot serve on 127.0.0.1:{port}: Address already in use")
    assert "choose another port" in error
    assert not (tmp_path / "m.db").exists()


def test_a_tracking_server_that_cannot_open_its_store_raises_server_error(tmp_path):
    store = tmp_path / "mlflow.db"
    store.write_text("not a database")
    log = tmp_path / "server.log"
    tracking = server.command("server", f"sqlite:///{store}", "127.0.0.1", server.free_port())
    with pytest.raises(ServerError, match=f"exited with code 1 before it answered; its log {log}"):
        server.start(tracking, log=log)
    assert "file is not a database" in log.read_text()


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_study_ui_stopped_exits_130_and_stops_mlflow(stop, tmp_path):
    port = server.free_port()
    # A shell starts a background job with SIGINT ignored, and its children inherit that: the
    # `study` process gets SIGINT as from a terminal, whatever started pytest.
    inherited = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        process = subprocess.Popen(
            [sys.executable, "-m", "study.cli", "ui", "--port", str(port)]
            + ["--tracking-uri", f"sqlite:///{tmp_path}/m.db"],
            cwd=tmp_path,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
    finally:
        signal.signal(signal.SIGINT, inherited)
    try:
        wait_for_health(port, process)
        process.send_signal(stop)
        _, error = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    assert process.returncode == 130, error
    assert error.splitlines()[-1] == "interrupted"
    server.check_port("127.0.0.1", port)  # MLflow's UI stopped with it
