"""`study.serving.bench`: inference timing of the real classifier at a tiny image size, logged as
a run that the report picks up."""

from __future__ import annotations

import keras
import mlflow
import numpy as np
import pytest
from mlflow import MlflowClient

from study import config
from study.errors import StudyError
from study.model import nasnet as model
from study.model import runtimes
from study.model.nasnet import resolve_weights
from study.serving import bench
from study.tracking import provenance
from study.tracking.store import Store


def test_machine_names_cpu_cores_and_libraries():
    described = provenance.machine()
    assert described["cpu"] and int(described["cpu_cores"]) >= 1
    assert described["tensorflow"] in described["machine"]
    assert described["gpu"] == "none" or described["gpu"] in described["machine"]


def test_timing_statistics():
    timing = bench.Timing(4, (10.0, 30.0, 20.0, 40.0))
    assert timing.median_ms == 25.0
    assert timing.quartiles_ms == (17.5, 32.5)
    assert timing.ms_per_image == 25.0 / 4


def test_bench_measures_both_batch_sizes_and_logs_a_bench_run(tmp_path):
    study = config.validate(
        {"name": "tiny", "data": {"image_size": 32}, "model": {"weights": "none"}}
    )
    result = bench.measure_config(study, batch_sizes=(4, 1), warmup=1, repeats=2)
    assert [t.batch_size for t in result.timings] == [4, 1]
    assert all(len(t.step_ms) == 2 and min(t.step_ms) > 0 for t in result.timings)
    assert result.parameters == 4_376_022
    assert "batch 4:" in bench.summary(result) and "batch 1:" in bench.summary(result)

    store = Store(f"sqlite:///{tmp_path}/m.db")
    run_id = bench.log(result, store, "tiny")
    mlflow.set_tracking_uri(store.uri)
    run = mlflow.search_runs(experiment_names=["tiny"]).iloc[0]
    assert run["run_id"] == run_id and run["status"] == "FINISHED"
    assert run["tags.run_type"] == "bench"
    assert run["tags.machine"] == result.machine["machine"]
    assert run["tags.weights_source"] == "none"
    assert run["params.image_size"] == "32" and run["params.repeats"] == "2"
    timing = result.timings[0]
    assert run["metrics.batch4_ms_per_step"] == pytest.approx(timing.median_ms)
    assert run["metrics.batch4_ms_per_image"] == pytest.approx(timing.median_ms / 4)
    assert run["metrics.batch1_ms_per_step_q3"] == pytest.approx(result.timings[1].quartiles_ms[1])
    steps = MlflowClient(store.uri).get_metric_history(run_id, "batch1/step_ms")
    assert [m.value for m in sorted(steps, key=lambda m: m.step)] == pytest.approx(
        list(result.timings[1].step_ms)
    )


def test_bench_refuses_no_repeats():
    with pytest.raises(StudyError, match="at least 1"):
        bench.measure(32, resolve_weights("none"), repeats=0)


def test_bench_on_onnxruntime_names_the_runtime(tmp_path):
    result = bench.measure(
        32, resolve_weights("none"), batch_sizes=(2, 1), warmup=1, repeats=1, runtime="onnxruntime"
    )
    assert result.runtime == "onnxruntime" and "onnxruntime on" in bench.summary(result)
    store = Store(f"sqlite:///{tmp_path}/m.db")
    run_id = bench.log(result, store, "tiny")
    run = MlflowClient(store.uri).get_run(run_id)
    assert run.data.tags["runtime"] == "onnxruntime" and run.data.params["runtime"] == "onnxruntime"
    assert run.data.metrics["batch2_ms_per_step"] > 0


def test_bench_refuses_an_unknown_runtime():
    with pytest.raises(StudyError, match="openvino-bf16"):
        bench.measure(32, resolve_weights("none"), runtime="tensorrt")


@pytest.mark.parametrize("runtime", ["onnxruntime", "openvino"])
def test_a_head_with_adapted_feature_normalization_runs_on_other_runtimes(tmp_path, runtime):
    # a saved and reloaded head, as `study export` and `study bench` get it from a run
    head = model.build_head(6, "elu", 0.2, 16, seed=0, normalize=True)
    features = np.random.default_rng(0).gamma(0.5, 2.0, (64, model.FEATURE_WIDTH))
    model.adapt_head(head, features.astype("float32"))
    head.save(tmp_path / "head.keras")
    head = keras.models.load_model(tmp_path / "head.keras")
    predict = runtimes.predictor(head, runtime, tmp_path)
    expected = head.predict(features, verbose=0)
    np.testing.assert_allclose(predict(features.astype("float32")), expected, atol=1e-5)
