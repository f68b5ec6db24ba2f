"""Common corruptions (Hendrycks & Dietterich 2019) with the CIFAR-10-C recipe's parameters.

Every corruption is a function `f(x, severity, generator=None)` of an N x C x H x W float
batch in [0, 1] (C = 1 or 3) and a severity 1..5; it returns a batch of the same shape,
dtype and device, clamped to [0, 1], computed with batched torch operations on x's device
and reproducible from the generator's seed. `corrupt(x, name, severity, seed)` is the door
that seeds the generator.

The parameters are those of `make_cifar_c.py` in github.com/hendrycks/robustness (chosen for
32x32 images; ImageNet-C's differ). robench's own interpretations, where the recipe gives
nothing to follow or relies on tools torch lacks:

- Other image sizes: blur radii and sigmas (defocus, gaussian, glass, motion) scale with
  side / 32; elastic displacements and the random layers of snow, frost, fog and spatter are
  made on a 32-pixel reference grid and resized to the image; zoom factors, pixelate
  fractions, noise and colour parameters are relative already and apply as they are. So on
  8x8 digits the recipe's sub-pixel blurs (defocus_blur, gaussian_blur, motion_blur at
  severity 1) shrink to a quarter and barely change the image, as they would on a 32-pixel
  image shrunk to 8.
- frost: a procedural, seeded ice texture replaces the recipe's six frost photographs.
- snow, motion_blur: a torch version of ImageMagick's motion blur.
- spatter: an approximation of the recipe's OpenCV shading of water drops.
- jpeg_compression: a batched torch JPEG codec (libjpeg's tables and 4:2:0 chroma).
- zoom_blur: continuous zooms instead of integer crops; glass_blur: no uint8 rounding.
- saturate leaves grey (1-channel) images unchanged.

The registry is a `robench.registry.Registry` of its own (each entry's meta says whether the
corruption is random); `premade` reads the published CIFAR-10-C-style sets.
"""

from robench.corruptions import blur, digital, noise, weather
from robench.corruptions._common import CORRUPTIONS, SEVERITIES
from robench.corruptions.premade import find_premade, load_premade
from robench.corruptions.suite import BENCHMARK, EXTRA, corrupt, get, names, seed_for

__all__ = [
    "BENCHMARK", "CORRUPTIONS", "EXTRA", "SEVERITIES",
    "blur", "corrupt", "digital", "find_premade", "get", "load_premade", "names", "noise",
    "seed_for", "weather",
]  # fmt: skip
