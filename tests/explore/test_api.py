"""The explorer's JSON API without a browser (FastAPI's TestClient): every kind of model answers
every request, and bad requests get a 4xx with a one-line message while the server goes on."""

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient

from helpers.data import write_celeba
from helpers.explore import as_base64, image_file, png_of, space_of
from vaelab.explore.app import create_app

CONV = ["model/encoder=conv", "model/decoder=conv", "model.encoder.channels=[8,16]",
        "model.decoder.channels=[16,8]"]
#: models of every kind the configs make: priors, posteriors, likelihoods, conditions, nets
MODELS = {
    "mlp-bernoulli": [],
    "mog-prior-iaf-posterior": ["model/prior=mixture_of_gaussians", "model/posterior=iaf",
                                "model.posterior.hidden_dims=[16]"],
    "vamp-prior": ["model/prior=vamp", "model.prior.num_pseudo_inputs=10"],
    "flow-prior-gaussian": ["model/prior=flow", "model/likelihood=gaussian"],
    "cvae-label": ["model.condition=label"],
    "cvae-attributes-continuous-bernoulli": ["model.condition=attributes",
                                             "model/likelihood=continuous_bernoulli"],
    "conv-logistic-mixture": [*CONV, "model/likelihood=discretized_logistic_mixture"],
    "1d-discretized-logistic": ["model.latent_dim=1", "model/likelihood=discretized_logistic"],
}


def exercise(client: TestClient) -> dict:
    """Every request of the page, checked against the model's shapes; -> /api/info."""
    info = client.get("/api/info").json()
    d, (channels, height, width) = info["latent_dim"], info["image_shape"]
    usage = [dim["usage"] for dim in info["dims"]]
    assert sorted(dim["index"] for dim in info["dims"]) == list(range(d))
    assert usage == sorted(usage, reverse=True)
    condition = info["condition"]
    y = None if condition is None else [1.0] + [0.0] * (len(condition["names"]) - 1)

    def shown(url):
        image = png_of(url)
        mode = {1: "L", 3: "RGB", 4: "RGBA"}.get(channels, "L")
        size = (width if channels in (1, 3, 4) else channels * width, height)
        assert (image.mode, image.size) == (mode, size)
        return np.array(image)

    centre = client.post("/api/decode", json={"z": info["centre"], "y": y})
    assert centre.status_code == 200, centre.text
    shown(centre.json()["image"])
    items = [client.post("/api/item", json={"index": i}).json() for i in (0, 1)]
    for item in items:
        shown(item["image"])
        shown(item["reconstruction"])
        assert len(item["z"]) == d and (item["y"] is None) == (condition is None)
    frames = client.post("/api/interpolate", json={
        "start": {"z": items[0]["z"], "y": items[0]["y"]},
        "end": {"z": items[1]["z"], "y": items[1]["y"]}, "steps": 4, "method": "spherical"})
    assert frames.status_code == 200, frames.text
    assert len(frames.json()["frames"]) == 4 and len(frames.json()["codes"]) == 4
    assert len(client.post("/api/sample", json={"temperature": 0.7}).json()["z"]) == d
    direction = client.post("/api/direction", json={"attribute": info["attributes"][0]})
    assert direction.status_code == 200, direction.text
    assert len(direction.json()["vector"]) == d and direction.json()["num_with"] > 0
    upload = client.post("/api/upload", json={"data": as_base64(image_file(30, 20)), "y": y})
    assert upload.status_code == 200, upload.text
    shown(upload.json()["image"])
    shown(upload.json()["reconstruction"])
    assert len(upload.json()["z"]) == d
    if d >= 2:
        assert len(upload.json()["scatter_xy"]) == 2
        points = client.get(f"/api/points?x={info['dims'][0]['index']}&y=0").json()
        assert len(points["x"]) == len(points["y"]) == info["num_points"]
    else:  # no plane in one dimension
        assert info["scatter"] is None and upload.json()["scatter_xy"] is None
    return info


@pytest.mark.parametrize("overrides", MODELS.values(), ids=MODELS.keys())
def test_every_kind_of_model_answers_every_request(overrides, tmp_path):
    space = space_of(overrides, tmp_path, num_points=40, direction_images=50)
    info = exercise(TestClient(create_app(space)))
    if "model.condition=label" in overrides:
        assert info["condition"]["names"] == [str(c) for c in range(10)]
    if "model/prior=mixture_of_gaussians" in overrides:
        assert info["usage_kind"] == "variance"  # no KL per dim: the posterior means' variance


def test_colour_faces_with_attributes(tmp_path):
    rng = np.random.default_rng(0)
    root = write_celeba(tmp_path / "faces", rng.integers(0, 255, (60, 16, 16, 3), np.uint8),
                        rng.integers(0, 2, (60, 40)), np.array([0] * 40 + [1] * 10 + [2] * 10))
    space = space_of(["experiment=celeba_vae", f"data.data_dir={root}", "data.crop_size=null",
                      "data.image_shape=[3,16,16]", "data.cache=false", "model.latent_dim=6",
                      *CONV[2:]], tmp_path, num_points=10, direction_images=20)
    client = TestClient(create_app(space))
    info = exercise(client)
    assert info["image_shape"] == [3, 16, 16] and "Eyeglasses" in info["attributes"]
    assert client.post("/api/direction", json={"attribute": "Eyeglasses",
                                               "source": "Smiling"}).status_code == 200


def test_sprites_with_factor_values(tmp_path):
    space = space_of(["data=sprites", f"data.cache_dir={tmp_path}", "data.image_size=16",
                      "data.scales=2", "data.orientations=2", "data.positions=4",
                      "data.val_size=20", "data.test_size=20"], tmp_path, num_points=20,
                     direction_images=20)
    client = TestClient(create_app(space))
    info = exercise(client)
    assert "shape:heart" in info["attributes"]
    vector = client.post("/api/direction", json={"attribute": "shape:heart",
                                                 "source": "shape:square"})
    assert vector.status_code == 200 and len(vector.json()["vector"]) == info["latent_dim"]


@pytest.fixture(scope="module")
def client(tmp_path_factory) -> TestClient:
    space = space_of([], tmp_path_factory.mktemp("api"), num_points=30, direction_images=50)
    return TestClient(create_app(space, max_upload_bytes=20_000, max_pixels=100_000))


def _code(value: float = 0.0) -> list[float]:
    return [value] * 8


BAD_REQUESTS = [
    ("/api/decode", {"z": "abc"}, 422, "z: Input should be a valid list"),
    ("/api/decode", {"z": _code(1e9)}, 422, "z.0: Input should be less than or equal to 10000"),
    ("/api/decode", {"z": _code()[:3]}, 422, "z has 3 numbers; this model's codes have 8"),
    ("/api/decode", {"z": _code(), "y": [1.0]}, 422, "this model is not conditional"),
    ("/api/decode", {"z": _code(), "path": "/etc/passwd"}, 422,
     "path: Extra inputs are not permitted"),
    ("/api/decode", {}, 422, "z: Field required"),
    ("/api/item", {"index": -1}, 422, "index=-1: the scatter has images 0..29"),
    ("/api/item", {"index": "../../last.ckpt"}, 422, "index: Input should be a valid integer"),
    ("/api/interpolate", {"start": {"z": _code()}, "end": {"z": _code()}, "steps": 1000}, 422,
     "steps: Input should be less than or equal to 64"),
    ("/api/interpolate", {"start": {"z": _code()}, "end": {"z": _code()}, "method": "cubic"},
     422, "method: Input should be 'linear' or 'spherical'"),
    ("/api/sample", {"temperature": 0}, 422, "temperature: Input should be greater than 0"),
    ("/api/sample", {"temperature": 1, "layer": 3, "z": _code()}, 422,
     "layer=3: this model has latent layers 0..0"),
    ("/api/direction", {"attribute": "cat"}, 422, "'cat' is not an attribute of this data"),
    ("/api/direction", {"attribute": "3", "source": "3"}, 422, "are the same"),
    ("/api/upload", {"data": "%%%"}, 422, "data is not base64"),
    ("/api/upload", {"data": as_base64(b"GIF89a but not really")}, 415,
     "not an image the explorer reads"),
    ("/api/upload", {"data": as_base64(image_file(400, 400, "RGB", "BMP"))}, 413,
     "(uploads.max_bytes)"),
    ("/api/upload", {"data": as_base64(image_file(500, 300, "1", "PNG", colour=0))}, 413,
     "500x300 pixels; the explorer takes at most 100000 pixels"),
]


@pytest.mark.parametrize("path, body, status, message", BAD_REQUESTS,
                         ids=[f"{p}-{m[:30]}" for p, _, _, m in BAD_REQUESTS])
def test_a_bad_request_gets_a_4xx_with_one_line_and_the_server_goes_on(client, path, body,
                                                                       status, message):
    answer = client.post(path, json=body)
    assert answer.status_code == status, answer.text
    detail = answer.json()["detail"]
    assert isinstance(detail, str) and message in detail and "\n" not in detail
    assert client.post("/api/decode", json={"z": _code()}).status_code == 200


def test_malformed_bodies_and_queries_get_a_4xx(client):
    for body in (b"{not json", b"[1, 2", b"\xff\xfe", b"NaN"):
        answer = client.post("/api/decode", content=body,
                             headers={"content-type": "application/json"})
        assert answer.status_code == 422, body
    nan = client.post("/api/decode", content=b'{"z": [NaN, 0, 0, 0, 0, 0, 0, 0]}',
                      headers={"content-type": "application/json"})
    assert nan.json()["detail"] == "z.0: Input should be a finite number"
    assert client.get("/api/points?x=0&y=99").json()["detail"].startswith(
        "latent dimension 99 does not exist")
    assert client.get("/api/points?x=zero&y=1").status_code == 422
    assert client.post("/api/nothing", json={}).status_code == 404
    assert client.get("/api/decode").status_code == 405
    # no file outside the page's own static files is reachable
    for path in ("/static/../app.py", "/static/%2e%2e/app.py", "/static/../../checkpoints.py",
                 "/../pyproject.toml"):
        assert client.get(path).status_code == 404, path
    assert client.get("/static/explore.js").status_code == 200


def test_request_bodies_are_limited_before_they_are_read(client):
    too_big = b"{" + b" " * 1_100_000 + b"}"  # declared by Content-Length
    answer = client.post("/api/decode", content=too_big,
                         headers={"content-type": "application/json"})
    assert answer.status_code == 413 and "over 1000000 bytes" in answer.json()["detail"]

    def chunks():  # no Content-Length: counted as it arrives
        yield b'{"z": ['
        for _ in range(200):
            yield b"0.0, " * 2000
        yield b"0.0]}"

    streamed = client.post("/api/decode", content=chunks(),
                           headers={"content-type": "application/json"})
    assert streamed.status_code == 413
    assert client.post("/api/decode", json={"z": _code()}).status_code == 200


def test_the_page_and_its_files_are_served(client):
    page = client.get("/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert '<script src="/static/explore.js"' in page.text
    assert client.get("/static/explore.css").status_code == 200
    info = client.get("/api/info").json()
    assert info["limits"]["max_upload_bytes"] == 20_000 and info["layers"] == [8]
    assert torch.tensor(info["centre"]).abs().max() < 1e-6  # N(0, I): the median code is 0


def test_a_decode_round_trip_over_a_socket_takes_milliseconds(client):
    """The real server on a real socket: a response that waited for a delayed ACK (no
    TCP_NODELAY) would take ~40 ms."""
    import statistics
    import time

    import httpx2

    from vaelab.explore.server import BackgroundServer

    with BackgroundServer(client.app) as server, httpx2.Client(base_url=server.url) as http:
        times = []
        for i in range(30):
            start = time.perf_counter()
            assert http.post("api/decode", json={"z": _code(i / 30)}).status_code == 200
            times.append(time.perf_counter() - start)
    assert statistics.median(times) < 0.025, times
