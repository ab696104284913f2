"""vaelab-viz: the figures of a trained run, drawn again from its checkpoint alone."""

import pytest
from PIL import Image

from vaelab.configs import compose_config
from vaelab.run_dir import RunDir, RunDirLocked, RunLock
from vaelab.train import train
from vaelab.visualize import visualize
from vaelab.viz import FIGURES, HIERARCHICAL

pytestmark = pytest.mark.integration


def test_vaelab_viz_writes_every_figure_from_a_checkpoint(make_cfg, tmp_path):
    # every_n_epochs=0: the callback draws only when training ends
    train(make_cfg(["trainer.max_epochs=1", "logger=none", "test=false",
                    "callbacks.latent_viz.every_n_epochs=0"]))
    ckpt = tmp_path / "run" / "checkpoints" / "last.ckpt"
    paths = visualize(compose_config("viz", [f"ckpt_path={ckpt}"], tmp_path / "viz"))
    # every figure of a flat model, and samples from each sampler of conf/samplers/default.yaml
    names = [*(f for f in FIGURES if f not in HIERARCHICAL), "samples_prior", "samples_gmm"]
    assert paths == {name: tmp_path / "viz" / "figures" / name / "last.png" for name in names}
    assert all(p.is_file() for p in paths.values())
    # the same weights and images draw the very picture the callback drew when training ended
    trained = Image.open(tmp_path / "run" / "figures" / "latent_manifold" / "epoch_001.png")
    assert list(Image.open(paths["latent_manifold"]).getdata()) == list(trained.getdata())

    some = visualize(compose_config("viz", [f"ckpt_path={ckpt}",
                                            "figures.draw=[latent_scatter,kl_per_dim]",
                                            "samplers.gmm=null", "samplers.prior=null"],
                                    tmp_path / "some"))
    assert sorted(some) == ["kl_per_dim", "latent_scatter"]
    assert sorted(p.name for p in (tmp_path / "some" / "figures").iterdir()) == sorted(some)

    # issue 22 item 7: one lifecycle for every command, training's (run_dir.Attempt)
    viz = tmp_path / "some"
    assert (viz / "config_resolved.yaml").is_file() and (viz / ".hydra").is_dir()
    assert "figures written under" in (viz / "viz.log").read_text()
    drawn = {p: p.read_bytes() for p in viz.rglob("*.png")}
    with pytest.raises(FileExistsError, match="never written over"):
        visualize(compose_config("viz", [f"ckpt_path={ckpt}", "figures.draw=[kl_per_dim]"], viz))
    assert {p: p.read_bytes() for p in viz.rglob("*.png")} == drawn
    with RunLock(RunDir(tmp_path / "busy")), pytest.raises(RunDirLocked, match="in use by PID"):
        visualize(compose_config("viz", [f"ckpt_path={ckpt}"], tmp_path / "busy"))

def test_a_hierarchy_draws_every_figure_including_its_layers(make_cfg, tmp_path):
    train(make_cfg(["model=hvae", "model/ladder=residual", "model.ladder.width=8",
                    "trainer.max_epochs=1", "logger=none", "test=false",
                    "callbacks.latent_viz.every_n_epochs=0"]))
    figures = tmp_path / "run" / "figures"
    assert sorted(p.name for p in figures.iterdir()) == sorted(FIGURES)
    layers = Image.open(figures / "layer_samples" / "epoch_001.png")
    kl = Image.open(figures / "kl_per_layer" / "epoch_001.png")
    assert layers.width >= 400 and kl.width > 0
