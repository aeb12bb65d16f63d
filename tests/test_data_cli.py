"""``microlatent data`` commands."""

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from microlatent.cli.data import data
from microlatent.data import generate, parse_label, read_images, read_labels
from microlatent.errors import DataError, InputError


def run(*args):
    return CliRunner().invoke(data, [str(a) for a in args])


def test_generate_writes_the_same_images_as_the_api(tmp_path):
    out = tmp_path / "lines.h5"
    result = run("generate", "lines", "--n", 5, "--seed", 3, "--out", out, "--batch-size", 2, "-p", "n_lines=2,3")
    assert result.exit_code == 0, result.output
    expected, labels = generate("lines", 5, seed=3, n_lines=(2, 3))["lines"]
    assert np.array_equal(read_images(out, "lines"), expected)
    assert read_labels(out, "lines") == labels
    assert all(parse_label(s)["n_lines"] in (2, 3) for s in labels)


def test_generate_micro2d_like_and_info_table(tmp_path):
    out = tmp_path / "m.h5"
    assert run("generate", "micro2d-like", "--n", 2, "--size", 32, "--out", out).exit_code == 0
    assert run("generate", "circles", "--n", 3, "--out", out).exit_code == 0
    result = run("info", out)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].endswith("11 classes, 23 images")
    header = lines[1].split()
    assert header[:3] == ["class", "images", "shape"] and "vf" in header
    rows = {line.split()[0]: line.split() for line in lines[3:] if line and not line.startswith("vf")}
    assert rows["circles"][1:3] == ["3", "224x224"]
    assert rows["VoronoiSmall"][1:3] == ["2", "32x32"]
    vf = read_images(out, "GRF").mean(axis=(1, 2))
    assert rows["GRF"][3] == "2"  # phases
    assert float(rows["GRF"][4]) == pytest.approx(vf.mean(), abs=5e-4)


def test_import_command(tmp_path):
    folder = tmp_path / "pics"
    folder.mkdir()
    binary = np.zeros((20, 20), np.uint8)
    binary[5:12, 3:9] = 1
    Image.fromarray((40 + 180 * binary).astype(np.uint8)).save(folder / "a.png")
    out = tmp_path / "i.h5"
    result = run("import", folder, "--out", out, "--threshold", "0.5")
    assert result.exit_code == 0, result.output
    assert "pics" in result.stdout and np.array_equal(read_images(out, "pics")[0], binary)
    assert run("import", folder, "--out", out, "--threshold", "half").exit_code == 2
    result = run(
        "import", folder, "--out", out, "--name", "tiled", "--threshold", "0.5", "--tile", "10", "--stride", "5"
    )
    assert result.exit_code == 0 and "(9 images, 10x10" in result.output, result.output
    assert np.array_equal(read_images(out, "tiled")[4], binary[5:15, 5:15])
    result = run("import", folder, "--out", out, "--stride", "5")
    assert isinstance(result.exception, InputError) and "--stride needs --tile" in str(result.exception)


def test_errors_are_microlatent_errors(tmp_path):
    result = run("generate", "hexagons", "--n", 1, "--out", tmp_path / "x.h5")
    assert isinstance(result.exception, InputError) and "unknown kind 'hexagons'" in str(result.exception)
    result = run("generate", "GRF", "--n", 1, "--out", tmp_path / "x.h5", "-p", "colour=red")
    assert isinstance(result.exception, InputError)
    assert not (tmp_path / "x.h5").exists()  # nothing written before the parameters are checked
    result = run("info", tmp_path / "absent.h5")
    assert isinstance(result.exception, DataError) and "absent.h5" in str(result.exception)


def test_console_entry_point_prints_one_line(tmp_path, capsys):
    cli = pytest.importorskip("microlatent.cli")
    try:
        cli._register_commands()
    except ImportError as err:  # another command family not written yet
        pytest.skip(f"CLI not complete: {err}")
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["data", "info", str(tmp_path / "absent.h5")])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("microlatent: error: ") and err.count("\n") == 1 and "absent.h5" in err


def test_help_documents_every_option():
    for command in ("generate", "info", "import"):
        result = run(command, "--help")
        assert result.exit_code == 0
    text = run("generate", "--help").output
    for option in ("--n", "--size", "--seed", "--out", "--param"):
        assert option in text


def test_an_impossible_size_is_refused_before_anything_is_allocated(tmp_path):
    result = run("generate", "GRF", "--size", 10_000_000, "--n", 1, "--out", tmp_path / "x.h5")
    assert isinstance(result.exception, InputError) and "size 10000000 is too large" in str(result.exception)
    assert not (tmp_path / "x.h5").exists()


def test_a_killed_generate_leaves_no_file_that_looks_complete(tmp_path):
    """SIGKILL during a 10-class generate into a new file: no file at --out (the classes written so
    far are in a hidden .partial file, which the next generate replaces)."""
    import signal
    import subprocess
    import sys
    import time

    out = tmp_path / "m.h5"
    command = [
        sys.executable,
        "-m",
        "microlatent",
        "data",
        "generate",
        "micro2d-like",
        "--n",
        "400",
        "--out",
        str(out),
        "--batch-size",
        "8",
    ]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    partial = tmp_path / ".m.h5.partial"
    deadline = time.time() + 60
    while not partial.exists() and time.time() < deadline and process.poll() is None:
        time.sleep(0.05)
    time.sleep(0.5)
    assert process.poll() is None, "finished before it could be killed"
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    assert not out.exists() and partial.exists()
    assert run("generate", "GRF", "--n", 2, "--size", 16, "--out", out).exit_code == 0
    assert not partial.exists() and read_images(out, "GRF").shape == (2, 16, 16)
