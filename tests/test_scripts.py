"""Every script in scripts/, run as a user runs it (`python scripts/<name> ...` in a subprocess)
on tiny data the test writes, at the smallest sizes its options allow: the lines it promises and
the files it writes. (bench_train.py and gpu_check.sh have their own modules.) The four that
take 9-17 s are in the slow tier, which keeps the default run within its time budget."""

import re
from pathlib import Path

import pytest
import torch
from PIL import Image

from helpers.commands import run_command
from helpers.data import make_mnist, write_cifar
from helpers.explore import digits_checkpoint

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = ROOT / "scripts"
#: the test modules that run scripts besides this one
OTHER_SCRIPT_TESTS = ("test_bench_train.py", "test_gpu_check.py")


@pytest.fixture(autouse=True)
def no_shared_data(monkeypatch):
    """The scripts read VAELAB_DATA_DIR: never the developer's real data in a test."""
    monkeypatch.delenv("VAELAB_DATA_DIR", raising=False)


def run_script(cwd: Path, name: str, *args: str) -> str:
    """The output (stdout and stderr) of `python scripts/<name> *args` run in cwd."""
    return run_command(cwd, [str(SCRIPTS / name), *args], module=False)


def lines(pattern: str, out: str) -> list:
    """Every match of a one-line regex in the output (groups, if it has any)."""
    return re.findall(rf"^{pattern}$", out, re.M)


def test_every_script_has_a_smoke_test():
    tests = "".join(p.read_text() for p in (Path(__file__), *map(Path(__file__).with_name,
                                                                    OTHER_SCRIPT_TESTS)))
    untested = [p.name for p in SCRIPTS.iterdir() if p.is_file() and f'"{p.name}"' not in tests]
    assert not untested, f"scripts without a smoke test: {untested}"


@pytest.mark.integration
def test_bench_data_times_every_part_and_prints_their_ratios(tmp_path):
    data = make_mnist(tmp_path / "data")
    out = run_script(tmp_path, "bench_data.py", "--part", "all", "--data-dir", str(data),
                     "--batch-size", "8", "--batches", "2", "--repeats", "1",
                     "--loader-workers", "0", "--images", "100", "--workers", "0",
                     "--decode-workers", "1")
    # mnist and folder: vaelab against torchvision
    assert len(lines(r"ratio vaelab / torchvision +: +\d+\.\d", out)) == 2, out
    # loader: each loader against vaelab's TensorBatchLoader
    assert lines(r"TensorBatchLoader +: +\d+ img/s +ratio to TensorBatchLoader +1\.00", out)
    assert lines(r"DataLoader, 0 workers +: +\d+ img/s +ratio to TensorBatchLoader +\d+\.\d\d",
                 out)
    # folder: the two pipelines deliver the same pixels
    (difference,) = lines(r"image folder: 100 images -> 3x32x32, batches of 8, median of 1 "
                          r"epochs; largest pixel difference of the two pipelines on one image: "
                          r"(\d+\.\d+)", out)
    assert float(difference) < 1 / 255
    assert lines(r"cache build, 1 decode thread\(s\) +: +\d+ img/s", out)


@pytest.mark.slow
def test_bench_explore_reports_round_trip_latency_against_the_decode_alone(tmp_path):
    out = run_script(tmp_path, "bench_explore.py", "--ckpt", str(digits_checkpoint()),
                     "--requests", "3", "--clients", "2", "--num-points", "20")
    assert lines(r".+: \d+-D codes, images 1x8x8", out), out
    latency = r"p50 \d+\.\d\d ms, p90 \d+\.\d\d, p99 \d+\.\d\d, max \d+\.\d\d"
    assert lines(rf"decode round trip over HTTP, 3 requests one at a time: {latency} -> \d+ "
                 r"requests/s", out), out
    assert lines(r"2 clients at once: \d+ requests/s", out)
    assert lines(rf"in this process, no HTTP \(decode \+ PNG\): {latency}", out)
    assert lines(r"round trip / in-process, medians: \d+\.\dx", out)


@pytest.mark.integration
def test_bench_hvae_prints_each_variant_against_the_eager_loop(tmp_path):
    write_cifar(tmp_path / "data")
    out = run_script(tmp_path, "bench_hvae.py", "--data-dir", str(tmp_path / "data"),
                     "--steps", "1", "--warmup", "1", "--batch-size", "4", "data.val_size=8",
                     "model.ladder.width=8", "model.ladder.latent_channels=2",
                     "model.ladder.encoder_blocks=[1,1,1,1,1,1]",
                     "model.ladder.latent_layers=[0,0,1,0,0,1]")
    assert lines(r"1 timed steps after 1, batch 4, 1 round\(s\); img/s: median", out), out
    assert lines(r"vaelab +\d+\.\d +\d+\.\d{3}", out) and lines(r"eager +\d+\.\d +1\.000", out)


@pytest.mark.integration
def test_bench_latent_models_prints_each_variant_as_a_ratio_to_the_standard_vae(
        tmp_path, monkeypatch):
    monkeypatch.setenv("VAELAB_DATA_DIR", str(make_mnist(tmp_path / "data")))
    out = run_script(tmp_path, "bench_latent_models.py", "--steps", "1", "--warmup", "1",
                     "--rounds", "1", "--batch-size", "4")
    assert re.search(r"threads, CPU, batch 4, MNIST$", out, re.M), out
    (round_line,) = lines(r"round 1: (.*)", out)
    timed = re.findall(r"(\S+(?: \(zuko\))?) \d+\.\d ms", round_line)
    rows = lines(r"(\S+(?: \(zuko\))?) +\d+\.\d\d +(\d+\.\d\d)", out)
    assert [name for name, _ in rows] == timed and rows[0] == ("standard", "1.00")
    assert "iaf (zuko)" in timed or "zuko is not installed" in out


@pytest.mark.slow
def test_bench_latent_viz_prints_the_overhead_of_drawing_every_epoch(tmp_path):
    data = make_mnist(tmp_path / "data")
    out = run_script(tmp_path, "bench_latent_viz.py", "--data-dir", str(data), "--epochs", "1",
                     "--draws", "1")
    assert lines(r"mnist_2d: 1 epochs each", out), out
    assert lines(r"  without LatentViz +: +\d+\.\d\d s/epoch  \[[\d.]+\]", out)
    assert lines(r"  drawing every epoch +: +\d+\.\d\d s/epoch  \[[\d.]+\]", out)
    assert lines(r"  ratio with/without +: +\d+\.\d{3}", out)
    assert lines(r"  one draw, all figures +: +\d+\.\d\d s \(mean of 1; = \d+\.\d% of an epoch\)",
                 out)


@pytest.mark.integration
def test_bench_nll_trains_then_reports_the_learning_curve_and_log_likelihood(tmp_path):
    data, run = make_mnist(tmp_path / "data"), tmp_path / "run"
    out = run_script(tmp_path, "bench_nll.py", "--epochs", "1", "--num-samples", "2",
                     "--nll-images", "4", "--output-dir", str(run), f"data.data_dir={data}",
                     "callbacks.latent_viz=null")
    assert len(lines(r" +1 +\d+\.\d\d +\d+\.\d\d", out)) == 1, out  # one epoch, one row
    assert lines(r"test -log p\(x\), K=2 on 4 test images: \d+\.\d\d nats \(\d\.\d{4} bits/dim\);"
                 r" active units \d+/50", out)
    assert lines(rf"learning curve: {re.escape(str(run / 'learning_curve.png'))}", out)
    assert Image.open(run / "learning_curve.png").format == "PNG"


@pytest.mark.slow
def test_bench_nll_with_a_checkpoint_times_vaelab_eval_against_a_plain_loop(tmp_path):
    out = run_script(tmp_path, "bench_nll.py", "--ckpt", str(digits_checkpoint()),
                     "--num-samples", "2", "--nll-images", "4", "--repeats", "1",
                     "--output-dir", str(tmp_path / "speed"))
    assert lines(r"K=2 x 4 images = 8 decodes, median of 1", out), out
    assert lines(r"ratio vaelab-eval / plain loop: \d+\.\d{3}", out)
    assert (tmp_path / "speed" / "eval0" / "metrics.json").is_file()


@pytest.mark.slow
def test_explore_screenshot_photographs_the_page(tmp_path):
    pytest.importorskip("playwright")
    from vaelab.explore.browser import chromium_path

    if chromium_path() is None:
        pytest.skip("no chromium on PATH (apt-get install chromium; .ci/run does)")
    shot = tmp_path / "shot.png"
    out = run_script(tmp_path, "explore_screenshot.py", "--ckpt", str(digits_checkpoint()),
                     "--out", str(shot), "--width", "800", "--height", "600")
    assert f"wrote {shot}" in out
    image = Image.open(shot)
    assert image.format == "PNG" and image.width == 800 and image.height >= 600


@pytest.mark.integration
def test_make_cifar_like_writes_a_cifar10_folder_and_pngs(tmp_path):
    from vaelab.data import CIFAR10DataModule

    mnist, out_dir, pngs = make_mnist(tmp_path / "mnist"), tmp_path / "cifar", tmp_path / "png"
    out = run_script(tmp_path, "make_cifar_like.py", "--mnist", str(mnist), "--out",
                     str(out_dir), "--train-size", "20", "--test-size", "10", "--png-dir",
                     str(pngs), "--png-count", "5")
    assert f"{out_dir / 'cifar-10-batches-py'}: 20 train, 10 test images" in out
    assert f"{pngs}: 5 PNG files in class folders" in out
    data = CIFAR10DataModule(data_dir=str(out_dir), val_size=5, batch_size=4)  # data=cifar10
    data.prepare_data()
    data.setup()
    assert data.class_names == ["zero", "one", "two", "three", "four", "five", "six", "seven",
                                "eight", "nine"]
    assert [len(data.images(s)) for s in ("train", "val", "test")] == [15, 5, 10]
    assert data.images("test").shape[1:] == (3, 32, 32)
    files = sorted(pngs.rglob("*.png"))
    assert len(files) == 5 and {f.parent.name for f in files} <= set(data.class_names)
    assert all(Image.open(f).size == (32, 32) and Image.open(f).mode == "RGB" for f in files)


@pytest.mark.integration
def test_train_digit_features_prints_test_accuracy_and_saves_the_weights(tmp_path):
    from vaelab.metrics.digit_features import DigitFeatures

    data, weights = make_mnist(tmp_path / "data"), tmp_path / "digit_features.pt"
    out = run_script(tmp_path, "train_digit_features.py", "--data-dir", str(data), "--out",
                     str(weights), "--epochs", "1")
    assert lines(r"epoch 1: test accuracy [01]\.\d{4}", out), out
    assert f"wrote {weights}" in out
    DigitFeatures().load_state_dict(torch.load(weights, weights_only=True))  # strict: all keys
