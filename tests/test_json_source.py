"""One rule for "is this JSON text or a file path" (train/json_source.py), used by both from_json."""
import pytest

from sparseopt_edu.train import History, TrainConfig
from sparseopt_edu.train.json_source import json_text


def test_text_is_returned_and_a_path_is_read(tmp_path):
    assert json_text('  \n{"a": 1}') == '  \n{"a": 1}'
    path = tmp_path / "x.json"
    path.write_text('{"b": 2}')
    assert json_text(str(path)) == json_text(path) == '{"b": 2}'
    with pytest.raises(FileNotFoundError):
        json_text(str(tmp_path / "missing.json"))


def test_config_and_history_from_json_take_text_a_path_string_or_a_path(tmp_path):
    cfg = TrainConfig(epochs=2, dense_layers=("head",))
    path = tmp_path / "config.json"
    cfg.to_json(path)
    assert TrainConfig.from_json(cfg.to_json()) == TrainConfig.from_json(str(path)) == TrainConfig.from_json(path) == cfg
    h = History()
    h.epoch.extend([1, 2])
    h.test_acc.extend([0.5, None])
    h.to_json(tmp_path / "history.json")
    for source in (h.to_json(), str(tmp_path / "history.json"), tmp_path / "history.json"):
        back = History.from_json(source)
        assert back.epoch == [1, 2] and back.test_acc == [0.5, None]
