"""Tests of ``convlstm_tl.errors`` through ``convlstm_tl.cli.run_main``: every user error is one line and exit 2."""

import pytest

from convlstm_tl.cli import run_main
from convlstm_tl.cli.train import FLAGS, PROG, main
from convlstm_tl.errors import ConfigError, DomainFileError, RunError, UserError


@pytest.mark.parametrize("kind", [UserError, DomainFileError, ConfigError, RunError])
def test_every_user_error_is_one_line_and_exit_2(kind, capsys):
    def failing(argv):
        raise kind("something is wrong;\n  fix it")

    assert run_main(failing, [], prog="prog") == 2
    assert capsys.readouterr().err == "prog: error: something is wrong; fix it\n"


def test_an_error_about_a_field_names_its_flag_on_the_command_line(capsys):
    def failing(argv):
        raise ConfigError("give resume or overwrite, not both", field="resume")

    assert run_main(failing, [], prog="prog", flags={"resume": "--resume"}) == 2
    assert capsys.readouterr().err == "prog: error: give resume or overwrite, not both (option --resume)\n"
    # Without a mapping (a Python caller's view) the field alone is named.
    assert str(ConfigError("x", field="resume")) == "x" and ConfigError("x", field="resume").field == "resume"


def test_a_bug_keeps_its_traceback():
    def failing(argv):
        raise ValueError("a bug")

    with pytest.raises(ValueError, match="a bug"):
        run_main(failing, [], prog="prog")


@pytest.mark.parametrize("argv, flag", [
    (["--transfer", "ms"], "(option --from RUN)"),
    (["--transfer", "ms", "--from", "St", "--strategy", "frezee"], "unknown strategy 'frezee'"),
    (["--source", "St", "--resume", "--overwrite"], "(options --resume, --overwrite)"),
    (["--transfer", "ms", "--from", "St", "--target-fraction", "0.5", "--target-per-class", "3"],
     "(options --target-fraction, --target-per-class)"),
])
def test_train_cli_names_the_flag_before_touching_any_file(argv, flag, tmp_path, capsys):
    """Settings are validated before the data folder, the source run or the backend are looked at."""
    code = run_main(main, [*argv, "--data-dir", str(tmp_path / "nowhere"), "--runs-dir", str(tmp_path / "runs")],
                    prog=PROG, flags=FLAGS)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and flag in err[0], err
    assert not (tmp_path / "runs").exists()
