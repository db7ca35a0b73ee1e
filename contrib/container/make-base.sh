#!/usr/bin/env bash
# Makes a local debian:12 base image for machines that cannot pull from a
# registry (docs/containers.md): debootstrap's minimal Debian 12, imported
# as localhost/debian:12. The Dockerfile adds the bookworm-updates and
# bookworm-security suites itself, so the mirror is all this needs.
#   bash contrib/container/make-base.sh [podman|docker]
# Needs root and debootstrap (apt-get install debootstrap). About a minute.
set -euo pipefail
engine=${1:-${RVS_CONTAINER_ENGINE:-podman}}
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
dir=$(mktemp -d /tmp/rvs-debian12.XXXXXX)
trap 'rm -rf "$dir"' EXIT
debootstrap --variant=minbase bookworm "$dir/root" "$mirror"
# What the official image leaves out too: downloaded packages and lists.
rm -rf "$dir"/root/var/cache/apt/archives/*.deb "$dir"/root/var/cache/apt/*.bin \
    "$dir"/root/var/lib/apt/lists/*
tar -C "$dir/root" -c . | "$engine" import - localhost/debian:12
echo "imported localhost/debian:12; build with --build-arg BASE=localhost/debian:12"
