"""Sample recordings in the galaxea layout (being written)."""

VARIANTS = ("mcap", "bag")
FAULTS: dict = {}


def write(out, index, scene, size, rng, variant, depth=False):
    raise NotImplementedError
