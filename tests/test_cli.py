import subprocess
import sys

import pytest

import keras_unet
from keras_unet import cli


def test_version_console_script():
    out = subprocess.run(
        [sys.executable, "-m", "keras_unet.cli", "--version"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip() == f"keras-unet {keras_unet.__version__}"


def test_summary_prints_layers_and_geometry(capsys):
    assert cli.main(["summary", "--input-size", "572"]) == 0
    out = capsys.readouterr().out
    assert "31,030,658" in out
    assert "unet_up1_crop" in out
    assert "input tile 572 px -> output tile 388 px" in out
    assert "margin 92 px" in out
    assert "556, 572, 588" in out


def test_summary_small_model(capsys):
    assert (
        cli.main(
            [
                "summary",
                "--input-size",
                "60",
                "--depth",
                "2",
                "--filters",
                "4",
                "--channels",
                "3",
                "--classes",
                "4",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "input tile 60 px -> output tile 20 px" in out


def test_invalid_size_is_one_line_error(capsys):
    assert cli.main(["summary", "--input-size", "570"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("keras-unet: error: input size 570 is not valid")
    assert "556 and 572" in err
    assert "Traceback" not in err


def test_no_command_prints_help(capsys):
    assert cli.main([]) == 2
    assert "summary" in capsys.readouterr().out


def test_bad_option_value_exits_2():
    with pytest.raises(SystemExit) as e:
        cli.main(["summary", "--depth", "0"])
    assert e.value.code == 2
