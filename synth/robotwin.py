"""Sample recordings in the robotwin layout (being written)."""

VARIANTS = ("classic", "xpolicy")
FAULTS: dict = {}


def write(out, index, scene, size, rng, variant, depth=False):
    raise NotImplementedError
