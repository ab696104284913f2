"""Images to and from the page: model images as PNG data URLs, and uploaded files decoded safely
(size and pixel count checked before any pixel is decoded) into the data's shape."""

import base64
import io
from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

#: formats an upload may be in; anything else is refused before decoding
UPLOAD_FORMATS = ("PNG", "JPEG", "GIF", "BMP", "WEBP")


class UploadError(ValueError):
    """An uploaded file that is not an image the explorer takes; `status` is the HTTP code."""

    def __init__(self, message: str, status: int = 422):
        super().__init__(message)
        self.status = status


def display_array(image: torch.Tensor) -> np.ndarray:
    """float [C, H, W] in [0, 1] -> uint8 [H, W] (1 channel), [H, W, 3|4] (RGB, RGBA); other
    channel counts side by side as grey, [H, C * W]."""
    pixels = (image.detach().float().cpu().clamp(0, 1) * 255).round().to(torch.uint8)
    channels = pixels.shape[0]
    if channels == 1:
        return pixels[0].numpy()
    if channels in (3, 4):
        return pixels.permute(1, 2, 0).numpy()
    return torch.cat(list(pixels), dim=1).numpy()


def png_data_url(image: torch.Tensor) -> str:
    """An image float [C, H, W] in [0, 1] as a `data:image/png;base64,...` URL."""
    buffer = io.BytesIO()
    Image.fromarray(display_array(image)).save(buffer, format="PNG", compress_level=1)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def read_upload(data: bytes, shape: Sequence[int], max_bytes: int, max_pixels: int,
                invert: bool = False) -> torch.Tensor:
    """An uploaded image file -> uint8 [C, H, W] of the data's `shape`: cropped to its aspect
    ratio and resized (Lanczos), grey for 1 channel (or repeated over C), RGB for 3, RGBA for 4;
    `invert` turns dark-on-light into light-on-dark (a photo of a digit into MNIST's look)."""
    if len(data) > max_bytes:
        raise UploadError(f"the image is {len(data)} bytes; the explorer takes at most "
                          f"{max_bytes} (uploads.max_bytes)", status=413)
    try:
        image = Image.open(io.BytesIO(data), formats=UPLOAD_FORMATS)  # reads the header only
        width, height = image.size
        if width * height > max_pixels:
            raise UploadError(f"the image is {width}x{height} pixels; the explorer takes at "
                              f"most {max_pixels} pixels (uploads.max_pixels)", status=413)
        image.seek(0)  # the first frame of an animation
        return _to_shape(ImageOps.exif_transpose(image), shape, invert)
    except UploadError:
        raise
    except Image.DecompressionBombError:  # PIL's own ceiling, far above uploads.max_pixels
        raise UploadError(f"the image has far more pixels than the {max_pixels} the explorer "
                          "takes (uploads.max_pixels)", status=413) from None
    except UnidentifiedImageError:
        raise UploadError(f"not an image the explorer reads: upload a {', '.join(UPLOAD_FORMATS)} "
                          "file", status=415) from None
    except (OSError, ValueError, SyntaxError) as err:
        raise UploadError(f"not an image the explorer can read ({type(err).__name__}: "
                          f"{str(err).splitlines()[0] if str(err) else 'unreadable'}): upload a "
                          f"{', '.join(UPLOAD_FORMATS)} file", status=415) from None


def _to_shape(image: Image.Image, shape: Sequence[int], invert: bool) -> torch.Tensor:
    channels, height, width = shape
    mode = {3: "RGB", 4: "RGBA"}.get(channels, "L")
    image = ImageOps.fit(image.convert(mode), (width, height), method=Image.Resampling.LANCZOS)
    pixels = np.array(image, dtype=np.uint8).reshape(height, width, -1)
    if invert:
        colour = slice(0, 3)  # not the alpha channel
        pixels[..., colour] = 255 - pixels[..., colour]
    pixels = torch.from_numpy(pixels).permute(2, 0, 1)
    return pixels.expand(channels, -1, -1).contiguous() if mode == "L" else pixels.contiguous()
