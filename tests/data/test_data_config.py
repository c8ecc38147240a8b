import pytest

from toolrl_jax.config.core import ConfigError, build, to_dict
from toolrl_jax.config.data import DataConfig


def test_defaults_validate_and_round_trip():
    cfg = build(DataConfig, {}, "config.data")
    assert cfg == DataConfig()
    assert cfg.sft_policy == "random" and cfg.sft_p_long == 0.5  # leaves RL room to improve
    assert build(DataConfig, to_dict(cfg), "config.data") == cfg


@pytest.mark.parametrize(
    "override, message",
    [
        ({"source": "jsonl"}, "config.data.jsonl_path must be set"),
        ({"source": "csv"}, "config.data.source='csv' is not allowed"),
        ({"heldout_fraction": 1.0}, "heldout_fraction=1.0 must be in"),
        ({"tasks": ["arithmetic", "chess"]}, "unknown task 'chess'"),
        ({"tasks": []}, "at least one task"),
        ({"tasks": ["lookup", "lookup"]}, "duplicates"),
        ({"num_cities": 2, "num_countries": 3}, "num_cities=2 must be >= "),
        ({"hard_fraction": 1.5}, "hard_fraction=1.5"),
        ({"sft_policy": "sometimes"}, "sft_policy='sometimes' is not allowed"),
        ({"sft_p_long": -0.1}, "sft_p_long"),
        ({"demo_vocab_size": 100}, "demo_vocab_size=100 must be in"),
        ({"num_epochs": -1}, "num_epochs"),
        ({"vocab": 3}, "unknown config key 'config.data.vocab'"),
    ],
)
def test_bad_values_name_the_key(override, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace("[", r"\[")):
        build(DataConfig, override, "config.data")
