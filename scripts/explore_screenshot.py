"""The README's picture of vaelab-explore: the page of a checkpoint, used as a person would use
it, photographed by the browser the tests drive (Playwright on the system's chromium).

    python scripts/explore_screenshot.py --ckpt <run>/checkpoints/last.ckpt \
        --out docs/images/explore_mnist_2d.png [--data-dir <folder>]

Serves the checkpoint in this process, loads the page, clicks two scatter points (A, then B),
interpolates between them, uploads --upload (default: a drawn 7), pushes its code along the
direction of --attribute (away from --source) and saves the whole page.
"""

import argparse
import io
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from vaelab.configs import compose_config
from vaelab.explore.app import create_app
from vaelab.explore.browser import chromium_context
from vaelab.explore.command import LOOPBACK_NAMES, build_space
from vaelab.explore.server import BackgroundServer


def drawn_digit() -> bytes:
    """A 7 drawn dark on light, as a photo of a handwritten digit would be."""
    image = Image.new("L", (200, 200), 245)
    ImageDraw.Draw(image).line([(50, 45), (150, 45), (95, 165)], fill=20, width=18)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def click_point(page, index: int) -> None:
    x, y = page.evaluate(f"window.vaelab.scatterPixel({index})")
    scatter = page.locator("#scatter")
    scatter.scroll_into_view_if_needed()  # a small window shows it below the fold
    box = scatter.bounding_box()
    page.mouse.click(box["x"] + x, box["y"] + y)
    page.wait_for_function(f"window.vaelab.state.picked === {index}")
    page.wait_for_timeout(300)


def nearest_to(xy: np.ndarray, fraction: tuple[float, float]) -> int:
    """The scatter point nearest a place given as fractions of the plot's width and height."""
    target = xy.min(0) + np.array(fraction) * (xy.max(0) - xy.min(0))
    return int(((xy - target) ** 2).sum(1).argmin())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--ckpt", required=True)
    parser.add_argument("--out", default="docs/images/explore_mnist_2d.png")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--attribute", default="1", help="a class or attribute name")
    parser.add_argument("--source", default="0")
    parser.add_argument("--strength", type=float, default=1.0, help="along the direction")
    parser.add_argument("--upload", default=None, help="an image file (default: a drawn 7)")
    parser.add_argument("--width", type=int, default=1400)
    parser.add_argument("--height", type=int, default=1000)
    args = parser.parse_args()
    overrides = [f"ckpt_path={args.ckpt}"] + ([f"data_dir={args.data_dir}"] if args.data_dir
                                              else [])
    space, title = build_space(compose_config("explore", overrides, "explore_screenshot"))
    upload = Path(args.upload).read_bytes() if args.upload else drawn_digit()
    xy = space.projection.xy
    with BackgroundServer(create_app(space, title, allowed_hosts=LOOPBACK_NAMES)) as server, \
            chromium_context(args.width, args.height) as browser:
        page = browser.new_page()
        page.goto(server.url)
        page.wait_for_selector("body[data-ready=true]")
        click_point(page, nearest_to(xy, (0.2, 0.75)))
        page.click("#set-a")
        click_point(page, nearest_to(xy, (0.8, 0.3)))
        page.click("#set-b")
        page.select_option("#interp-method", "spherical")
        page.click("#interpolate")
        page.wait_for_function("document.querySelectorAll('#strip img').length > 0")
        page.check("#invert")
        page.set_input_files("#upload", files=[{"name": "digit.png", "mimeType": "image/png",
                                                "buffer": upload}])
        page.wait_for_selector("#uploaded:not([hidden])")
        page.select_option("#dir-attribute", args.attribute)
        page.select_option("#dir-source", args.source)
        page.click("#dir-find")
        page.wait_for_function("document.querySelector('#dir-status').textContent.includes('|v|')")
        page.eval_on_selector("#dir-strength", f"s => {{ s.value = {args.strength}; "
                              "s.dispatchEvent(new Event('input')); }")
        page.wait_for_timeout(500)
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=args.out, full_page=True)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
