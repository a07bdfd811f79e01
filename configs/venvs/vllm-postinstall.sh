# Run by scripts/venv.sh (the "# run:" line of vllm-nodeps.txt) with VENV set and configs/venvs as cwd.
# Builds stub libc10_cuda.so / libtorch_cuda.so from vllm-cuda-stubs.c and makes every Python process of the
# venv (vLLM's spawned workers too) preload them, plus the libcudart torchvision bundles, with RTLD_GLOBAL
# through a .pth hook: then PyPI's CUDA-built torchvision/torchaudio load beside the CPU torch.
stubs="$VENV/lib/cuda_stubs"
mkdir -p "$stubs"
gcc -shared -fPIC -O2 -Wl,-soname,libc10_cuda.so -o "$stubs/libc10_cuda.so" vllm-cuda-stubs.c
gcc -shared -fPIC -O2 -Wl,-soname,libtorch_cuda.so -o "$stubs/libtorch_cuda.so" -x c /dev/null
site=$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
cat > "$site/_cuda_stubs_preload.py" <<'PY'
import ctypes, glob, os, sys

_site = os.path.dirname(os.path.abspath(__file__))
for _lib in [os.path.join(sys.prefix, "lib", "cuda_stubs", n) for n in ("libc10_cuda.so", "libtorch_cuda.so")] \
        + sorted(glob.glob(os.path.join(_site, "torchvision.libs", "libcudart*.so*")))[:1]:
    ctypes.CDLL(_lib, mode=ctypes.RTLD_GLOBAL)
PY
echo "import _cuda_stubs_preload" > "$site/zz_cuda_stubs_preload.pth"
