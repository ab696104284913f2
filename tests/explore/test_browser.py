"""The explorer's page in a real browser: Playwright driving the system's chromium against the
server of a trained digits checkpoint (one server and one browser for the module)."""

import pytest

from helpers.explore import digits_checkpoint, image_file, two_layer_model
from vaelab.configs import compose_config
from vaelab.explore.browser import chromium_path

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(chromium_path() is None,
                       reason="no chromium on PATH (apt-get install chromium; .ci/run does)"),
]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    from vaelab.explore.app import create_app
    from vaelab.explore.command import LOOPBACK_NAMES, build_space
    from vaelab.explore.server import BackgroundServer

    cfg = compose_config("explore", [f"ckpt_path={digits_checkpoint()}", "num_points=300",
                                     "directions.num_images=200"],
                         tmp_path_factory.mktemp("explore"))
    space, title = build_space(cfg)
    app = create_app(space, title, max_upload_bytes=50_000, allowed_hosts=LOOPBACK_NAMES)
    with BackgroundServer(app) as running:
        running.space = space
        yield running


@pytest.fixture(scope="module")
def browser():
    pytest.importorskip("playwright")
    from vaelab.explore.browser import chromium_context

    with chromium_context() as context:
        yield context


@pytest.fixture
def page(browser, server):
    """The page, loaded and laid out; fails the test on any script error it logs."""
    page = browser.new_page()
    errors = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(server.url)
    page.wait_for_selector("body[data-ready=true]")
    page.wait_for_function("window.vaelab.stats.decodesShown > 0")
    yield page
    page.close()
    assert errors == []


def state(page, expression: str):
    return page.evaluate(f"window.vaelab.state.{expression}")


def settle(page) -> None:
    """Wait until every decode the page sent has come back (twice, 50 ms apart: a decode
    that was waiting is sent when the one in flight returns)."""
    for _ in range(2):
        page.wait_for_function("(() => { const s = window.vaelab.stats; "
                               "return s.decodesDone === s.decodesSent; })()")
        page.wait_for_timeout(50)


def click_point(page, index: int) -> None:
    x, y = page.evaluate(f"window.vaelab.scatterPixel({index})")
    box = page.locator("#scatter").bounding_box()
    page.mouse.click(box["x"] + x, box["y"] + y)


def decoded(page) -> str:
    return page.get_attribute("#decoded", "src")


def test_the_page_shows_a_slider_per_dim_most_used_first(page, server):
    info = server.space.info()
    dims = page.eval_on_selector_all("#sliders input", "inputs => inputs.map(i => +i.dataset.dim)")
    assert dims == [d["index"] for d in info["dims"]]
    unused = page.eval_on_selector_all("#sliders label", "rows => rows.map(r => "
                                       "r.classList.contains('unused'))")
    assert unused == [d["unused"] for d in info["dims"]]
    assert decoded(page).startswith("data:image/png;base64,")
    assert page.inner_text("#title").endswith("last.ckpt")
    assert page.is_hidden("#error") and page.is_hidden("#layer-row")


def test_moving_a_slider_changes_the_image(page):
    before, z_before = decoded(page), state(page, "z")
    slider = page.locator("#sliders input").first
    slider.focus()
    for _ in range(40):
        page.keyboard.press("ArrowRight")
    settle(page)
    dim = int(slider.get_attribute("data-dim"))
    assert state(page, f"z[{dim}]") > z_before[dim]
    assert decoded(page) != before


def test_a_burst_of_moves_sends_no_backlog_and_shows_the_last(page, server):
    decodes = []
    page.on("request", lambda r: decodes.append(r) if r.url.endswith("/api/decode") else None)
    page.evaluate("""() => {
        const slider = document.querySelector('#sliders input');
        for (let i = 0; i <= 300; i++) {
            slider.value = slider.min * 1 + (slider.max - slider.min) * i / 300;
            slider.dispatchEvent(new Event('input'));
        }
    }""")
    settle(page)
    # one request was in flight; of the 300 moves after it only the newest was sent
    assert len(decodes) <= 3, len(decodes)
    assert page.evaluate("window.vaelab.stats.decodesSkipped") >= 297  # dropped, never sent
    shown = page.evaluate("""async () => {
        const s = window.vaelab.state;
        const r = await fetch('/api/decode', {method: 'POST',
            headers: {'Content-Type': 'application/json'}, body: JSON.stringify({z: s.z})});
        return (await r.json()).image; }""")
    assert decoded(page) == shown  # the image of the final code


def test_dragging_on_the_pad_moves_two_dims(page):
    box = page.locator("#pad").bounding_box()
    x_dim, y_dim = state(page, "padDims")
    page.mouse.move(box["x"] + 40, box["y"] + box["height"] - 40)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] - 40, box["y"] + 40, steps=25)
    page.mouse.up()
    settle(page)
    z = state(page, "z")
    assert z[x_dim] > 1.5 and z[y_dim] > 1.5  # right and up: both near their +3 sigma end


def test_clicking_a_scatter_point_loads_its_image_reconstruction_and_code(page, server):
    click_point(page, 7)
    page.wait_for_selector("#picked:not([hidden])")
    settle(page)
    item = server.space.item(7)
    assert state(page, "z") == pytest.approx(item["z"], abs=1e-5)
    assert state(page, "picked") == 7
    first = page.locator("#sliders input").first
    assert float(first.input_value()) == pytest.approx(item["z"][int(first.get_attribute(
        "data-dim"))], abs=0.02)
    assert page.get_attribute("#picked-image", "src").startswith("data:image/png")
    assert page.get_attribute("#picked-recon", "src").startswith("data:image/png")
    assert f"image 7, class {int(server.space.classes[7])}" in page.inner_text("#picked-caption")


def test_an_interpolation_between_two_images_is_a_strip(page, server):
    click_point(page, 0)
    page.wait_for_function("window.vaelab.state.picked === 0")
    settle(page)
    page.click("#set-a")
    click_point(page, 5)
    page.wait_for_function("window.vaelab.state.picked === 5")
    settle(page)
    page.click("#set-b")
    page.fill("#interp-steps", "6")
    page.select_option("#interp-method", "spherical")
    page.click("#interpolate")
    page.wait_for_function("document.querySelectorAll('#strip img').length === 6")
    frames, codes = server.space.interpolation({"z": server.space.item(0)["z"]},
                                               {"z": server.space.item(5)["z"]}, 6, "spherical")
    page.locator("#strip img").nth(3).click()
    settle(page)
    assert state(page, "z") == pytest.approx(codes[3].tolist(), abs=1e-5)


def test_a_direction_and_a_prior_sample(page, server):
    page.select_option("#dir-attribute", "9")
    page.select_option("#dir-source", "4")
    page.click("#dir-find")
    page.wait_for_function("document.querySelector('#dir-status').textContent.includes('|v|')")
    base = state(page, "z")
    strength = page.locator("#dir-strength")
    strength.focus()
    for _ in range(20):  # 20 steps of 0.05: strength 1
        page.keyboard.press("ArrowRight")
    settle(page)
    vector, _ = server.space.direction("9", "4")
    assert state(page, "z") == pytest.approx((torch_tensor(base) + vector).tolist(), abs=1e-4)
    before = state(page, "z")
    with page.expect_response("**/api/sample") as sampled:
        page.click("#sample")
    assert sampled.value.status == 200, sampled.value.text()
    settle(page)
    assert state(page, "z") != before and page.is_hidden("#error")


def torch_tensor(values):
    import torch

    return torch.tensor(values)


def test_an_uploaded_image_is_reconstructed_and_placed_in_the_scatter(page, server):
    data = image_file(90, 60)
    page.check("#invert")
    page.set_input_files("#upload", files=[{"name": "digit.png", "mimeType": "image/png",
                                            "buffer": data}])
    page.wait_for_selector("#uploaded:not([hidden])")
    settle(page)
    from vaelab.explore.images import read_upload

    expected = server.space.encode(read_upload(data, (1, 8, 8), 50_000, 10**6, invert=True),
                                   None)
    assert state(page, "z") == pytest.approx(expected["z"], abs=1e-5)
    assert state(page, "uploaded") == pytest.approx(expected["scatter_xy"], abs=1e-6)
    assert page.get_attribute("#upload-recon", "src").startswith("data:image/png")


def test_bad_requests_leave_the_server_and_the_page_working(page):
    statuses = page.evaluate("""async () => {
        const post = (path, body) => fetch(path, {method: 'POST',
            headers: {'Content-Type': 'application/json'}, body}).then(r => r.status);
        return [await post('/api/decode', '{not json'),
                await post('/api/decode', JSON.stringify({z: ['a']})),
                await post('/api/decode', JSON.stringify({z: [1e300, 0, 0, 0, 0, 0, 0, 0]})),
                await post('/api/item', JSON.stringify({index: 10 ** 9})),
                await post('/api/upload', JSON.stringify({data: 'x'.repeat(100000)})),
                await post('/api/sample', JSON.stringify({temperature: -1}))]; }""")
    assert statuses == [422, 422, 422, 422, 413, 422]
    # a file that is not an image: the page says why, and goes on working
    page.set_input_files("#upload", files=[{"name": "notes.png", "mimeType": "image/png",
                                            "buffer": b"not an image at all"}])
    page.wait_for_selector("#error:not([hidden])")
    assert "415: not an image the explorer reads" in page.inner_text("#error")
    before = decoded(page)
    page.click("#sample")
    page.wait_for_function(f"document.querySelector('#decoded').src !== {before!r}")
    assert page.is_hidden("#error")


def test_a_hierarchical_model_resamples_from_a_layer_down(browser, server):
    from vaelab.explore.app import create_app
    from vaelab.explore.server import BackgroundServer
    from vaelab.explore.space import LatentSpace

    space = LatentSpace(two_layer_model(), server.space.data, num_points=50)
    with BackgroundServer(create_app(space)) as hierarchical:
        page = browser.new_page()
        page.goto(hierarchical.url)
        page.wait_for_selector("body[data-ready=true]")
        assert page.is_visible("#layer-row")
        assert page.eval_on_selector_all("#layer option", "o => o.map(x => x.textContent)") == \
            ["1 (top, all layers)", "2 of 2"]
        page.select_option("#layer", "1")
        before = state(page, "z")
        with page.expect_response("**/api/sample") as sampled:
            page.click("#sample")
        assert sampled.value.status == 200
        page.wait_for_function("window.vaelab.stats.decodesDone === window.vaelab.stats."
                               "decodesSent")
        after = state(page, "z")
        assert after[:2] == before[:2] and after[2:] != before[2:]  # the top layer is kept
        page.close()
