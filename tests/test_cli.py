"""The command line end to end: every command has --help, bad input is one line and exit status 2,
and the model commands round-trip through files."""

import numpy as np
import pytest
import torch

from microlatent.cli import _register_commands, cli, main
from microlatent.data import generate
from microlatent.data.store import write_class
from microlatent.models import build_model, save_model


def run(argv, capsys):
    """(exit status, stdout, stderr) of `microlatent ARGV`."""
    with pytest.raises(SystemExit) as stop:
        main(argv)
        raise SystemExit(0)
    out = capsys.readouterr()
    return stop.value.code or 0, out.out, out.err


def commands(group, prefix=()):
    for name, command in group.commands.items():
        yield (*prefix, name)
        if hasattr(command, "commands"):
            yield from commands(command, (*prefix, name))


def test_every_command_has_help(capsys):
    _register_commands()
    names = list(commands(cli))
    assert {
        ("train",),
        ("finetune",),
        ("model", "encode"),
        ("model", "decode"),
        ("model", "roundtrip"),
        ("stats",),
        ("demo",),
        ("data", "generate"),
        ("properties", "homogenize"),
        ("compare",),
        ("report",),
        ("synthesize",),
        ("design", "fit"),
        ("design", "predict"),
        ("design", "search"),
    } <= set(names)
    for name in names:
        code, out, _ = run([*name, "--help"], capsys)
        assert code == 0 and "Usage: microlatent" in out, name


@pytest.fixture(scope="module")
def model_and_data(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cli")
    ((images, labels),) = generate("GRF", 6, size=32, seed=0).values()
    write_class(folder / "data.h5", "GRF", images, labels)
    torch.manual_seed(0)
    save_model(build_model("taesd_vae", width=8, latent_channels=2), folder / "model.pt")
    return folder


def test_encode_decode_reconstruct_round_trip(model_and_data, tmp_path, capsys):
    folder = model_and_data
    code, out, err = run(
        ["model", "encode", str(folder / "model.pt"), str(folder / "data.h5"), "--out", str(tmp_path / "z.npz")], capsys
    )
    assert code == 0, err
    latents = np.load(tmp_path / "z.npz")
    assert latents["mu"].shape == (6, 2, 2, 2) and len(latents["names"]) == 6
    code, _, err = run(
        ["model", "decode", str(folder / "model.pt"), str(tmp_path / "z.npz"), "--out", str(tmp_path / "x.npz")], capsys
    )
    assert code == 0, err
    decoded = np.load(tmp_path / "x.npz")["images"]
    assert decoded.shape == (6, 32, 32) and (tmp_path / "x.png").exists()
    # decode(encode(x)) through the CLI equals the model's eval-mode forward pass
    from microlatent.data.store import read_images
    from microlatent.models import load_model

    net = load_model(folder / "model.pt")
    with torch.no_grad():
        expected = net(torch.from_numpy(read_images(folder / "data.h5", "GRF").astype(np.float32))[:, None])[0][:, 0]
    np.testing.assert_allclose(decoded, expected.numpy(), atol=1e-5)
    code, _, err = run(
        [
            "model",
            "roundtrip",
            str(folder / "model.pt"),
            "--data",
            str(folder / "data.h5"),
            "--split",
            "all",
            "--out",
            str(tmp_path / "rec.png"),
        ],
        capsys,
    )
    assert code == 0 and (tmp_path / "rec.png").stat().st_size > 1000, err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["train", "no_such_config"], "no such config file"),
        (["model", "encode", "{tmp}/missing.pt", "{data}", "--out", "{tmp}/z.npz"], "missing.pt"),
        (["model", "encode", "{tmp}/corrupt.pt", "{data}", "--out", "{tmp}/z.npz"], "corrupt.pt"),
        (["model", "encode", "{model}", "{tmp}/nothing.h5", "--out", "{tmp}/z.npz"], "no such file"),
        (["stats", "{data}", "--class", "Nope", "--out", "{tmp}/s.png"], "no class 'Nope'"),
        (["train", "cai_mse_cpu", "--set", "optim.lrr=1", "--out", "{tmp}/run"], "unknown key 'optim.lrr'"),
        (
            [
                "train",
                "cai_mse_cpu",
                "--set",
                "model.name=big_vae",
                "--set",
                "data.path={data}",
                "--set",
                "data.generate=null",
                "--out",
                "{tmp}/run",
            ],
            "unknown model 'big_vae'",
        ),
        *[
            (["train", "cai_mse_cpu", "--set", setting, "--out", "{tmp}/run"], message)
            for setting, message in (
                ("optim.epochs=0", "'optim.epochs' must be an integer >= 1, got 0"),
                ("optim.epochs=-2", "'optim.epochs' must be an integer >= 1, got -2"),
                ("optim.batch_size=0", "'optim.batch_size' must be an integer >= 1"),
                ("optim.batch_size=-4", "'optim.batch_size' must be an integer >= 1"),
                ("optim.lr=-1", "'optim.lr' must be a number > 0, got -1.0"),
                ("optim.lr=.nan", "'optim.lr' must be a number > 0, got nan"),
                ("loss.kl=-1", "loss weight 'kl' must be a number >= 0"),
                ("data.num_workers=-1", "'data.num_workers' must be an integer >= 0"),
                ("name=../../x", "'name' must be a plain name"),
            )
        ],
        (
            [
                "compare",
                "{model}",
                "{model}",
                "--label",
                "a b",
                "--label",
                "a/b",
                "--data",
                "{data}",
                "--out",
                "{tmp}/r",
            ],
            "give the same figure file names",
        ),
        (["evaluate", "{model}", "--data", "{data}", "--out", "{tmp}/old_report"], "already holds a report"),
        (["evaluate", "{model}", "--data", "{data}", "--out", "{tmp}/a_file.txt"], "is a file"),
        (["model", "encode", "{model}", "{tmp}/nan.npy", "--out", "{tmp}/z.npz"], "values are NaN or infinite"),
        (["model", "encode", "{model}", "{tmp}/empty.npy", "--out", "{tmp}/z.npz"], "no images"),
        (["model", "encode", "{model}", "{tmp}/complex.npy", "--out", "{tmp}/z.npz"], "real numbers"),
        (["stats", "{tmp}/empty.npy", "--out", "{tmp}/s.png"], "no images"),
        (["model", "encode", "{model}", "{data}", "--out", "{tmp}/z"], "--out must be an .npz file name"),
        (["model", "decode", "{model}", "{tmp}/nan.npy", "--out", "{tmp}/d.npz"], "not an .npz with a 'mu' array"),
        (["model", "decode", "{model}", "{tmp}/zero.npz", "--out", "{tmp}/d.npz"], "not an .npz with a 'mu' array"),
        (["model", "decode", "{model}", "{tmp}/nan_mu.npz", "--out", "{tmp}/d.npz"], "finite floats"),
        (
            ["model", "decode", "{model}", "{tmp}/z_ok.npz", "--out", "{tmp}/d.npz", "--threshold", "nan"],
            "--threshold must be",
        ),
        (
            ["model", "decode", "{model}", "{tmp}/z_ok.npz", "--out", "{tmp}/d.npz", "--threshold", "1.5"],
            "--threshold must be",
        ),
        (
            ["sweep", "cai_mse_cpu", "--storage", "nosuchdb://x", "--out", "{tmp}/sw"],
            "cannot open it as an Optuna database",
        ),
        (["sweep", "cai_mse_cpu", "--storage", "{tmp}/a_file.txt", "--out", "{tmp}/sw"], "file is not a database"),
        (["synthesize", "{tmp}/no_maps.npz", "--out", "{tmp}/rs"], "no statistics maps or images"),
        (["synthesize", "{data}", "--out", "{tmp}/a_file.txt"], "is a file"),
        (["synthesize", "{data}", "--out", "{tmp}/rs", "--workers", "0"], "--workers"),
        (["synthesize", "{data}", "--out", "{tmp}/rs", "--method", "annealing", "--workers", "2"], "takes workers=1"),
        (["demo", "--no-train", "--set", "optim.epochs=1", "--out", "{tmp}/demo"], "--no-train trains nothing"),
        (["demo", "--no-train", "--device", "cpu", "--out", "{tmp}/demo"], "--no-train trains nothing"),
        (["demo", "--out", "{tmp}/a_file.txt"], "is a file"),
        (["report", "{tmp}"], "no metrics.json"),
        (["stats", "{data}", "--out", "{tmp}/s.txt"], "a figure must be .png"),
        (["stats", "{data}", "--out", "{tmp}"], "is a folder; name the figure file"),
        (["model", "roundtrip", "{model}", "--data", "{data}", "--out", "{tmp}/r.txt"], "a figure must be .png"),
        (["stats", "{tmp}/zero.npy", "--out", "{tmp}/s.png"], "not a readable .npy array"),
        (["synthesize", "{tmp}/zero.npz", "--out", "{tmp}/rs"], "not a readable .npz file"),
        (["data", "info", "{tmp}"], "is a directory. (see `microlatent data info --help`)"),
        (["model", "encode", "--nope"], "No such option '--nope'"),
        (
            [
                "train",
                "cai_mse_cpu",
                "--device",
                "cuda:3",
                "--set",
                "data.path={data}",
                "--set",
                "data.generate=null",
                "--out",
                "{tmp}/run",
            ],
            "no CUDA GPU",
        ),
    ],
)
def test_bad_input_is_one_line_and_status_2(model_and_data, tmp_path, capsys, argv, message):
    if "--device" in argv and torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    (tmp_path / "corrupt.pt").write_bytes(b"not a checkpoint at all")
    (tmp_path / "old_report").mkdir()
    (tmp_path / "old_report" / "report.html").write_text("<html>an earlier report</html>")
    (tmp_path / "a_file.txt").write_text("not a folder")
    np.save(tmp_path / "nan.npy", np.full((2, 16, 16), np.nan))
    np.save(tmp_path / "empty.npy", np.zeros((0, 16, 16)))
    np.save(tmp_path / "complex.npy", np.zeros((2, 16, 16), np.complex64))
    (tmp_path / "zero.npz").write_bytes(b"")
    (tmp_path / "zero.npy").write_bytes(b"")
    np.savez(tmp_path / "nan_mu.npz", mu=np.full((2, 4, 2, 2), np.nan))
    np.savez(tmp_path / "z_ok.npz", mu=np.zeros((2, 4, 2, 2), np.float32))
    np.savez(tmp_path / "no_maps.npz", statistics=np.zeros((0, 4, 16, 16)))
    values = {"tmp": tmp_path, "data": model_and_data / "data.h5", "model": model_and_data / "model.pt"}
    code, _, err = run([arg.format(**values) for arg in argv], capsys)
    assert code == 2 and message in err, err
    assert err.startswith("microlatent: error: ") and err.count("\n") == 1, err
