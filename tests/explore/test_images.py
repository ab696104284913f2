"""Images to and from the page: PNG data URLs of any channel count, and uploads decoded safely
into the data's shape (limits checked from the header, before any pixel is decoded)."""

import struct
import zlib

import numpy as np
import pytest
import torch

from helpers.explore import image_file, png_of
from vaelab.explore.images import UploadError, png_data_url, read_upload

LIMITS = {"max_bytes": 1_000_000, "max_pixels": 1_000_000}


def png_header_only(width: int, height: int) -> bytes:
    """A PNG that declares width x height pixels but holds no image data: what a
    decompression bomb looks like before its pixels are decoded."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + \
            struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IEND", b"")


@pytest.mark.parametrize("channels, mode", [(1, "L"), (3, "RGB"), (4, "RGBA"), (2, "L")])
def test_a_png_shows_the_image_in_its_channels(channels, mode):
    image = torch.rand(channels, 8, 6, generator=torch.Generator().manual_seed(0))
    shown = png_of(png_data_url(image))
    pixels = (image * 255).round().to(torch.uint8)
    if channels == 1:
        expected = pixels[0]
    elif channels == 2:  # other channel counts: side by side
        expected = torch.cat([pixels[0], pixels[1]], dim=1)
    else:
        expected = pixels.permute(1, 2, 0)
    assert shown.mode == mode and np.array_equal(np.array(shown), expected.numpy())


def test_an_upload_is_cropped_resized_and_converted_to_the_datas_shape():
    data = image_file(60, 40, "RGB")
    grey = read_upload(data, (1, 8, 8), **LIMITS)
    assert grey.dtype == torch.uint8 and grey.shape == (1, 8, 8)
    # the bright square fills the middle of the centre crop, the corners stay dark
    assert grey[0, 3:5, 3:5].min() > 200 and grey[0, 0, 0] < 30
    assert read_upload(data, (1, 8, 8), invert=True, **LIMITS).equal(255 - grey)
    assert read_upload(data, (3, 16, 16), **LIMITS).shape == (3, 16, 16)
    assert read_upload(data, (4, 5, 7), **LIMITS).shape == (4, 5, 7)
    two = read_upload(data, (2, 8, 8), **LIMITS)  # grey repeated over the channels
    assert two.shape == (2, 8, 8) and two[0].equal(two[1]) and two[0].equal(grey[0])
    for fmt in ("JPEG", "GIF", "BMP", "WEBP"):
        assert read_upload(image_file(20, 20, fmt=fmt), (1, 8, 8), **LIMITS).shape == (1, 8, 8)


def test_uploads_over_the_limits_are_refused_before_decoding():
    data = image_file(40, 40)
    with pytest.raises(UploadError, match=r"at most 100 \(uploads.max_bytes\)") as error:
        read_upload(data, (1, 8, 8), max_bytes=100, max_pixels=10_000)
    assert error.value.status == 413
    large = png_header_only(5_000, 3_000)  # 15 megapixels declared, 57 bytes long
    with pytest.raises(UploadError, match=r"5000x3000 pixels; .* at most 1000000 pixels"):
        read_upload(large, (1, 8, 8), **LIMITS)
    bomb = png_header_only(50_000, 50_000)  # 2.5 gigapixels: PIL itself refuses to open it
    with pytest.raises(UploadError, match=r"far more pixels .* \(uploads.max_pixels\)") as error:
        read_upload(bomb, (1, 8, 8), **LIMITS)
    assert error.value.status == 413


@pytest.mark.parametrize("data", [b"", b"hello", image_file(20, 20)[:60],
                                  png_header_only(10, 10), b"%PDF-1.4 not an image",
                                  b"<svg xmlns='http://www.w3.org/2000/svg'/>"],
                         ids=["empty", "text", "truncated", "no-pixels", "pdf", "svg"])
def test_files_that_are_not_readable_images_are_refused_in_one_line(data):
    with pytest.raises(UploadError) as error:
        read_upload(data, (1, 8, 8), **LIMITS)
    assert error.value.status == 415 and "\n" not in str(error.value)
    assert "PNG, JPEG" in str(error.value)
