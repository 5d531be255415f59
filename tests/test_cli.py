"""The seqzoo command: help, the models table, errors."""

import subprocess
import sys

import pytest

import zoo
from tasks import cli, models_table
from zoo.config import MODEL_NAMES


def test_models_table_counts_match_the_zoo():
    table = models_table.rows(timesteps=10, features=3, units=8, num_layers=2)
    assert [r[0] for r in table] == list(MODEL_NAMES)
    by_name = {name: (depth, params) for name, depth, params, _ in table}
    assert by_name["lstm"] == (1, 4 * 8 * (3 + 8 + 1))  # lstm is one layer whatever --num-layers says
    assert by_name["stacked_lstm"][0] == 2
    assert by_name["unshared_rnn"] == (2, 10 * 8 * (3 + 8 + 1) + 10 * 8 * (8 + 8 + 1))
    assert by_name["gru"][1] == zoo.count_params(zoo.ModelConfig("gru", units=8, num_layers=2), 10, 3)


def test_models_command_prints_the_table(capsys):
    assert cli.main(["models", "--timesteps", "10", "--features", "3", "--units", "8"]) == 0
    out = capsys.readouterr().out
    for name in MODEL_NAMES:
        assert name in out
    assert "384" in out  # the one-layer LSTM: 4 * 8 * (3 + 8 + 1)


def test_models_command_rejects_bad_sizes(capsys):
    assert cli.main(["models", "--units", "0"]) == 2
    assert "--units must be a positive integer, got 0" in capsys.readouterr().err


def test_help_is_fast_and_lists_commands():
    out = subprocess.run(
        [sys.executable, "-c", "import sys; from tasks.cli import main; main(['--help'])"],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0
    for command in ("train", "models", "generate", "tune", "study"):
        assert command in out.stdout
    # --help does not import TensorFlow.
    probe = "import sys; from tasks import cli; cli._parser(); print('tensorflow' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True).stdout.strip() == "False"


def test_train_without_task_lists_tasks(capsys):
    assert cli.main(["train"]) == 2
    out = capsys.readouterr().out
    for task in ("textgen", "classify", "movement"):
        assert task in out


@pytest.mark.parametrize("command", ["train classify", "train textgen", "train movement"])
def test_unknown_model_lists_valid_ones(command, capsys, tmp_path):
    argv = command.split() + ["--model", "transformer", "--quick", "--saved-models", str(tmp_path)]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert (
        "--model must be one of lstm, stacked_lstm, gru, simple_rnn, bidirectional, unshared_rnn, got 'transformer'"
        in err
    )
