"""Validation every task's Options shares: each bad value is refused on construction, naming
the field (the flag on the command line), the value and the way out."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

import tasks.movement as mv
import tasks.sequence_classification as sc
import tasks.text_generation as tg
from tasks.options import SEED_MAX
from zoo.errors import ConfigError

NAN, INF = math.nan, math.inf


@pytest.mark.parametrize(
    ("cls", "fields", "message"),
    [
        # bool and str fields, checked from the dataclass annotations
        (sc.Options, {"export": "no"}, "export must be True or False, got 'no'"),
        (sc.Options, {"small_data": "yes"}, "small_data must be True or False, got 'yes'"),
        (sc.Options, {"monitor": 0}, "monitor must be True or False, got 0"),
        (sc.Options, {"resample": 1}, "resample must be True or False, got 1"),
        (sc.Options, {"dataset": 5}, "dataset must be a string, got 5"),
        (sc.Options, {"saved_models": 3}, "saved_models must be a string or None, got 3"),
        (tg.Options, {"text_file": 3}, "text_file must be a string or None, got 3"),
        (mv.Options, {"price_column": 3}, "price_column must be a string or None, got 3"),
        # numbers that Keras or NumPy would refuse later, or that train into a diverged run
        (sc.Options, {"noise": 1.5}, "noise must be a number in [0, 1), got 1.5"),
        (sc.Options, {"noise": NAN}, "noise must be a number in [0, 1), got nan"),
        (sc.Options, {"noise": INF}, "noise must be a number in [0, 1), got inf"),
        (sc.Options, {"seed": -1}, f"seed must be an integer in [0, {SEED_MAX}]"),
        (sc.Options, {"seed": 99999999999}, f"seed must be an integer in [0, {SEED_MAX}]"),
        (sc.Options, {"seed": 1.5}, f"seed must be an integer in [0, {SEED_MAX}]"),
        (sc.Options, {"learning_rate": INF}, "learning_rate must be a positive finite number, got inf"),
        (sc.Options, {"learning_rate": NAN}, "learning_rate must be a positive finite number, got nan"),
        (sc.Options, {"clipnorm": INF}, "clipnorm must be a positive finite number or None, got inf"),
        (sc.Options, {"clipvalue": NAN}, "clipvalue must be a positive finite number or None, got nan"),
        (tg.Options, {"temperature": INF}, "temperature must be a positive finite number, got inf"),
        # a run name is one folder: anything else would write outside <runs>/<task>/<model>/
        (sc.Options, {"run_name": "../../escape"}, "run_name must be a plain folder name"),
        (sc.Options, {"run_name": "a/b"}, "run_name must be a plain folder name"),
        (sc.Options, {"run_name": ".."}, "run_name must be a plain folder name"),
        # the setting that does not fit the model is blamed, not the model
        (sc.Options, {"model": "gru", "cell": "lstm"}, "cell must be unset or 'gru' for model 'gru', got 'lstm'"),
        (sc.Options, {"model": "bidirectional", "cell": "simple"}, "cell must be one of lstm, gru for model"),
        (sc.Options, {"model": "lstm", "num_layers": 2}, "num_layers must be exactly 1 for model 'lstm', got 2"),
        (sc.Options, {"model": "stacked_lstm", "num_layers": 1}, "num_layers must be at least 2 for model"),
    ],
)
def test_bad_values_name_the_field_and_the_value(cls, fields, message):
    with pytest.raises(ConfigError) as info:
        cls(**fields)
    assert str(info.value).startswith(message), str(info.value)
    assert info.value.field in fields


def test_good_edge_values_are_accepted():
    assert sc.Options(seed=0).seed == 0 and sc.Options(seed=SEED_MAX).seed == SEED_MAX
    assert sc.Options(noise=0.0).noise == 0.0 and sc.Options(noise=0.99).noise == 0.99
    assert sc.Options(model="bidirectional", cell="gru").cell == "gru"
    assert sc.Options(model="gru", cell="gru", num_layers=3).num_layers == 3
    assert sc.Options(run_name="exp.1_a-b").run_name == "exp.1_a-b"
    # a Path is kept as its string, so the options stay JSON-serializable and hash the same
    assert sc.Options(runs=Path("somewhere")) == sc.Options(runs="somewhere")


def test_bptt_complains_once():
    with pytest.raises(ConfigError) as info:
        sc.Options(bptt="0")
    message = str(info.value)
    assert message.count("must be") == 1 and message.count("'0'") == 1, message
    with pytest.raises(ConfigError, match=r"got '1:2,0:1,full'\. Its stage K '0' is neither"):
        sc.Options(bptt="1:2,0:1,full")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--noise", "1.5"], "--noise must be a number in [0, 1), got 1.5"),
        (["--noise", "nan"], "--noise must be a number in [0, 1), got nan"),
        (["--seed", "-1"], "--seed must be an integer in [0, 4294967295]"),
        (["--learning-rate", "inf"], "--learning-rate must be a positive finite number, got inf"),
        (["--clipnorm", "inf"], "--clipnorm must be a positive finite number or None, got inf"),
        (["--run-name", "../../escape"], "--run-name must be a plain folder name"),
        (["--cell", "lstm", "--model", "gru"], "--cell must be unset or 'gru' for model 'gru', got 'lstm'"),
        (["--bptt", "0"], "--bptt must be a positive integer number of steps, 'full', or stages like"),
    ],
)
def test_command_line_names_the_flag_in_one_line(argv, message, tmp_path, capsys):
    assert sc.main([*argv, "--quick", "--no-export", "--runs", str(tmp_path / "runs")]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert not (tmp_path / "escape").exists() and not (tmp_path / "runs").exists()


def test_help_states_each_default_once():
    """A help text that already says what its None default means gets no "(default: None)" after it."""
    from tasks.options import build_parser

    text = " ".join(build_parser(sc.Options, "seqzoo train classify").format_help().split())
    assert "./saved_models) (default: None)" not in text and "256 tokens) (default: None)" not in text
    assert "--data-dir DATA_DIR text: tensorflow_datasets data_dir (default: None)" in text


def test_command_line_errors_name_flags_not_python_fields(tmp_path, capsys):
    """The hints inside a message use the flags too (a one-word name only where the message pairs it
    with its flag: plain words stay words), while a file name that contains a field's name is left alone."""
    from tasks.options import in_flags

    missing = tmp_path / "ts_train.ts"
    assert sc.main(["--ts-train", str(missing), "--ts-test", str(missing), "--quick", "--no-export"]) == 2
    err = capsys.readouterr().err
    assert "check the path given as --ts-train/--ts-test" in err and str(missing) in err
    assert in_flags("set text_file (--text-file) to it; the model", tg.Options) == "set --text-file to it; the model"
    assert in_flags("read csv (--csv), a csv file", mv.Options) == "read --csv, a csv file"
