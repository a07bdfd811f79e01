#!/usr/bin/env bash
# Create (once, cached) a separate virtualenv for a service and print its path.
#
# Usage: scripts/venv.sh NAME
#
# Reads configs/venvs/NAME.txt (pip requirements, installed normally) and, if
# present, configs/venvs/NAME-nodeps.txt (installed afterwards with --no-deps).
# The venv lives at ${VLA_VENV_CACHE:-$HOME/.cache/vla-data/venvs}/NAME-<hash>,
# where <hash> is the first 12 hex chars of the sha256 of those files (names and
# contents), so editing a pin gives a new venv. It is built in a temp dir next to
# it and renamed into place only when complete: an interrupted build is never used.
#
# Any other configs/venvs/NAME-* file (e.g. a C source a run step compiles) is part
# of the hash too.
#
# Directives in comment lines of those files:
#   # apt: pkg1 pkg2 ...     Debian packages the venv needs; installed with apt-get
#                            only when missing (checked on every call, cached or not).
#   # run: <shell command>   run after the installs, in configs/venvs, with VENV set to
#                            the venv being built (for fixes pip can't express).
#   # check: <python code>   run with the venv's python before the venv is accepted.
#
# Only stdout line: the venv path. Everything else goes to stderr.
# Env: VLA_VENV_CACHE (cache dir), VLA_VENV_PYTHON (interpreter, default python3.11).
set -euo pipefail

log() { printf '[venv.sh] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

[[ $# -eq 1 && -n $1 ]] || die "usage: $0 NAME"
name=$1
[[ $name =~ ^[A-Za-z0-9._-]+$ ]] || die "bad venv name: $name"

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cfg_dir=$repo/configs/venvs
req=$cfg_dir/$name.txt
req_nodeps=$cfg_dir/$name-nodeps.txt
files=()
[[ -f $req ]] && files+=("$req")
[[ -f $req_nodeps ]] && files+=("$req_nodeps")
[[ ${#files[@]} -gt 0 ]] || die "no $cfg_dir/$name.txt or $cfg_dir/$name-nodeps.txt"
extras=()
for f in "$cfg_dir/$name"-*; do
    [[ -f $f && $f != "$req_nodeps" ]] && extras+=("$f")
done

hash=$(for f in "${files[@]}" "${extras[@]}"; do printf '== %s\n' "$(basename "$f")"; cat "$f"; done \
    | sha256sum | cut -c1-12)
cache=${VLA_VENV_CACHE:-$HOME/.cache/vla-data/venvs}
final=$cache/$name-$hash
stamp=.vla-venv-complete
python=${VLA_VENV_PYTHON:-python3.11}

# --- apt packages declared with "# apt: ..." -------------------------------------
mapfile -t apt_pkgs < <(sed -n 's/^[[:space:]]*#[[:space:]]*apt:[[:space:]]*//p' "${files[@]}" \
    | tr -s ' \t' '\n\n' | sed '/^$/d' | sort -u)
missing=()
for p in "${apt_pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing+=("$p")
done
if [[ ${#missing[@]} -gt 0 ]]; then
    sudo=()
    if [[ $(id -u) -ne 0 ]]; then
        command -v sudo >/dev/null || die "need root or sudo to apt-get install: ${missing[*]}"
        sudo=(sudo)
    fi
    log "apt-get install ${missing[*]}"
    "${sudo[@]}" apt-get update -q >&2
    DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -q --no-install-recommends \
        "${missing[@]}" >&2
fi

# --- cached venv -------------------------------------------------------------------
if [[ -f $final/$stamp ]]; then
    log "cached: $final"
    printf '%s\n' "$final"
    exit 0
fi

mkdir -p "$cache"
# Serialise concurrent builds of the same venv.
if command -v flock >/dev/null; then
    exec 9>"$cache/.$name-$hash.lock"
    flock 9
    if [[ -f $final/$stamp ]]; then
        log "cached (built concurrently): $final"
        printf '%s\n' "$final"
        exit 0
    fi
fi
[[ -e $final ]] && die "$final exists but is incomplete (no $stamp); remove it"
if command -v flock >/dev/null; then
    # We hold the lock, so any temp dir of this venv is a leftover of a killed build.
    for old in "$cache/.$name-$hash.tmp."*; do
        [[ -d $old ]] && { log "removing leftover $old"; rm -rf "$old"; }
    done
fi

command -v "$python" >/dev/null || die "interpreter not found: $python"
tmp=$(mktemp -d "$cache/.$name-$hash.tmp.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM HUP
chmod 755 "$tmp"
start=$SECONDS
log "building $name venv in $tmp (from ${files[*]})"
"$python" -m venv "$tmp" >&2
pip=("$tmp/bin/python" -m pip --disable-pip-version-check --no-input)
if [[ -f $req ]]; then
    log "pip install -r $req"
    "${pip[@]}" install -r "$req" >&2
fi
if [[ -f $req_nodeps ]]; then
    log "pip install --no-deps -r $req_nodeps"
    "${pip[@]}" install --no-deps -r "$req_nodeps" >&2
fi

mapfile -t runs < <(sed -n 's/^[[:space:]]*#[[:space:]]*run:[[:space:]]*//p' "${files[@]}")
for r in "${runs[@]}"; do
    log "run: $r"
    (cd "$cfg_dir" && VENV=$tmp bash -euo pipefail -c "$r") >&2 || die "run step failed: $r"
done

mapfile -t checks < <(sed -n 's/^[[:space:]]*#[[:space:]]*check:[[:space:]]*//p' "${files[@]}")
for c in "${checks[@]}"; do
    log "check: $c"
    "$tmp/bin/python" -c "$c" >&2 || die "check failed: $c"
done

# venv scripts (bin/pip, console entry points, activate) embed the absolute build
# path: point them at the final location before the rename.
{ grep -rlIF -- "$tmp" "$tmp/bin" "$tmp/pyvenv.cfg" 2>/dev/null || true; } \
    | while IFS= read -r f; do sed -i "s|$tmp|$final|g" "$f"; done
{
    printf 'name=%s\nhash=%s\nbuilt=%s\n' "$name" "$hash" "$(date -u +%FT%TZ)"
    printf 'file=%s\n' "${files[@]}"
} >"$tmp/$stamp"

mv -T "$tmp" "$final" || die "could not rename $tmp to $final"
trap - EXIT
log "built $final in $((SECONDS - start))s"
printf '%s\n' "$final"
