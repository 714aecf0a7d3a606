from pathlib import Path

import pytest

from study import config
from study.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "study.yaml"
    path.write_text(text)
    return path


def test_shipped_search_spaces_are_valid():
    for path in sorted((REPO / "search_spaces").glob("*.yaml")):
        loaded = config.load(path)
        assert loaded.name == path.stem


def test_random_search_draws_study_yamls_knobs_independently():
    """random_search.yaml feeds Dodge's expected maximum, which needs i.i.d. draws: study.yaml's
    five knobs and ranges, the random oracle, one seed per configuration."""
    random = config.load(REPO / "search_spaces" / "random_search.yaml")
    study = config.load(REPO / "search_spaces" / "study.yaml")
    assert random.hyperparameters == study.hyperparameters
    assert random.model_dump(
        exclude={"name", "description", "hyperparameters", "tuner", "seeds"}
    ) == (study.model_dump(exclude={"name", "description", "hyperparameters", "tuner", "seeds"}))
    assert (random.tuner.oracle, random.tuner.max_configs) == ("random", 120)
    assert random.sweep_seeds == [0]


def test_overrides_set_nested_values_with_yaml_types(tmp_path):
    path = write(tmp_path, "name: t\n")
    loaded = config.load(
        path,
        [
            "data.root=/some/where",
            "data.image_size=96",
            "model.activation=relu",
            "fine_tune.epochs=2",
        ],
    )
    assert loaded.data.root == "/some/where"
    assert loaded.data.image_size == 96
    assert loaded.model.activation == "relu"
    assert loaded.fine_tune.epochs == 2
    assert loaded.knob_values()["activation"] == "relu"


def test_flat_params_carry_every_value_and_the_knobs(tmp_path):
    loaded = config.load(write(tmp_path, "name: t\nmodel: {dropout: 0.3}\n"))
    flat = loaded.flat()
    assert flat["model.dropout"] == 0.3
    assert flat["fine_tune.decay_rate"] == loaded.fine_tune.decay_rate
    assert set(loaded.knob_values()) == {
        "activation",
        "dropout",
        "head_width",
        "optimizer",
        "decay_rate",
    }


def test_label_columns_and_class_map_from_yaml_and_from_set(tmp_path):
    yaml_keys = "name: t\ndata:\n  class_map: {0.0: functional, 0.333: functional, 1: defective}\n"
    loaded = config.load(write(tmp_path, yaml_keys), ["data.label_columns={file: 0, class: 1}"])
    assert loaded.data.label_columns == {"file": 0, "class": 1}
    assert loaded.data.class_map == {"0.0": "functional", "0.333": "functional", "1": "defective"}
    from_set = config.load(
        write(tmp_path, "name: t\n"),
        [
            "data.class_map={0.0: functional, 0.333: functional, 1: defective}",
            "data.label_columns.class=2",
            "data.label_columns.file='0'",  # quoted: a column named 0
        ],
    )
    assert from_set.data.class_map == loaded.data.class_map
    assert from_set.data.label_columns == {"file": "0", "class": 2}
    flat = loaded.flat()
    assert flat["data.class_map"] == loaded.data.class_map  # one value: its keys are data
    assert flat["data.label_columns.file"] == 0
    assert config.load(write(tmp_path, "name: t\n")).flat()["data.class_map"] is None


@pytest.mark.parametrize(
    ("text", "overrides", "expected"),
    [
        (
            "name: t\n",
            ["data.label_columns={file: -1}"],
            "data.label_columns: file: give a column name or a position counted from 0 (got -1)",
        ),
        (
            "name: t\n",
            ["data.label_columns={file: 1, class: 1}"],
            "data.label_columns: file and class are the same column (1)",
        ),
        ("name: t\n", ["data.class_map={}"], "data.class_map: Dictionary should have at least 1"),
        ("name: t\n", ["data.class_map={a: ''}"], "data.class_map.a: String should have at least"),
        (
            "name: t\ndata: {colour: red}\n",
            [],
            "data.colour: unknown key; valid keys here: augmentation",
        ),
        (
            "name: t\n",
            ["model.dropout=-0.1"],
            "model.dropout: Input should be greater than or equal to 0",
        ),
        ("name: t\n", ["data.image_size=big"], "data.image_size: Input should be a valid integer"),
        (
            "name: t\n",
            ["data.split.val=0.5", "data.split.test=0.5"],
            "data.split: val + test must sum below 1",
        ),
        ("name: t\n", ["model.activation=softsign"], "model.activation: Input should be"),
        ("name: t\n", ["frozen.epochs=0"], "nothing to train"),
        ("data: {}\n", [], "name: Field required"),
        ("name: t\n", ["nonsense"], "expected KEY=VALUE"),
    ],
)
def test_invalid_configs_name_the_key(tmp_path, text, overrides, expected):
    with pytest.raises(ConfigError) as caught:
        config.load(write(tmp_path, text), overrides)
    message = str(caught.value)
    assert expected in message
    assert "\n" not in message


@pytest.mark.parametrize(
    ("space", "expected"),
    [
        ("model.activation: {type: choice, values: []}", "should have at least 1 item"),
        ("model.dropout: {type: float, min: 0.5, max: 0.1}", "min (0.5) must be below max (0.1)"),
        (
            "model.head_width: {type: int, min: 0, max: 8, sampling: log}",
            "log sampling needs min > 0",
        ),
        ("model.activation: {type: choice, values: [elu, bogus]}", "value 'bogus' is invalid"),
        ("model.depth: {type: fixed, value: 3}", "hyperparameters.model.depth: not a config key"),
        ("model.dropout: {type: range, min: 0, max: 1}", "does not match any of the expected tags"),
    ],
)
def test_invalid_search_spaces_name_the_key(tmp_path, space, expected):
    with pytest.raises(ConfigError, match=None) as caught:
        config.load(write(tmp_path, f"name: t\nhyperparameters:\n  {space}\n"))
    assert expected in str(caught.value)


def test_missing_and_malformed_files(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        config.load(tmp_path / "absent.yaml")
    with pytest.raises(ConfigError, match="not valid YAML"):
        config.load(write(tmp_path, "name: [unclosed\n"))
    with pytest.raises(ConfigError, match="must hold a mapping"):
        config.load(write(tmp_path, "- a list\n"))


def test_overrides_reach_into_dotted_hyperparameter_names(tmp_path):
    path = write(
        tmp_path, "name: t\nhyperparameters:\n  model.activation: {type: choice, values: [elu]}\n"
    )
    loaded = config.load(
        path,
        [
            "hyperparameters.model.activation.values=[elu, tanh]",
            "hyperparameters.model.dropout={type: float, min: 0.1, max: 0.3, step: 0.1}",
        ],
    )
    assert loaded.hyperparameters["model.activation"].values == ["elu", "tanh"]
    assert loaded.hyperparameters["model.dropout"].max == 0.3
