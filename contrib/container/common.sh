# Shared by up.sh and down.sh (sourced).
NAME=rvsctr
STATE=/tmp/rvs-container-demo
IMAGE=${RVS_IMAGE:-localhost/rvs}
ENGINE=${RVS_CONTAINER_ENGINE:-}
if [ -z "$ENGINE" ]; then
    for e in podman docker; do
        if command -v "$e" >/dev/null 2>&1; then ENGINE=$e; break; fi
    done
fi
say() { printf '### %s\n' "$*"; }
die() { printf 'container demo: %s\n' "$*" >&2; exit 1; }
[ -n "$ENGINE" ] || die "neither podman nor docker is installed"
