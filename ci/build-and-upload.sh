#!/usr/bin/env bash
# Builds a kas reference image and uploads its debug symbols (memfault-image.bbclass does the
# upload at the end of the image build). Called by the GitHub Actions and GitLab CI pipelines
# next to it on every release tag; runs the same on a workstation.
#
# usage: ci/build-and-upload.sh [KAS_FILE]        (default kas/qemuarm64.yml)
#
# Environment (from the CI's secret store, never from a file in the repository):
#   MEMFAULT_ORG, MEMFAULT_PROJECT, MEMFAULT_ORG_TOKEN   required: a release without its
#                                                         symbols is not a release
#   MEMFAULT_URL                                          optional, for a memfault-server
#   MEMFAULT_SOFTWARE_VERSION                             optional, default: the git tag
#   KAS_WORK_DIR                                          default: ../kas-work (outside the layer:
#                                                         poky inside it would be parsed as ours)
# Needs kas and the host packages of the Yocto Project (docs.yoctoproject.org, "Required
# Packages for the Build Host"), about 50 GB of disk and several hours the first time.
set -euo pipefail
cd "$(dirname "$0")/.."
kasfile=${1:-kas/qemuarm64.yml}

missing=()
for v in MEMFAULT_ORG MEMFAULT_PROJECT MEMFAULT_ORG_TOKEN; do
	[ -n "${!v:-}" ] || missing+=("$v")
done
if [ ${#missing[@]} -gt 0 ]; then
	echo "ci: ${missing[*]} not set: add them to the CI's secret store (README.md, \"Yocto\")" >&2
	exit 1
fi
if [ -z "${MEMFAULT_SOFTWARE_VERSION:-}" ]; then
	MEMFAULT_SOFTWARE_VERSION=$(git describe --tags --exact-match 2>/dev/null || git describe --tags --always)
fi
export MEMFAULT_SOFTWARE_VERSION
echo "ci: building $kasfile, software version $MEMFAULT_SOFTWARE_VERSION"
# MEMFAULT_SYMBOLS_STRICT: a release whose shipped programs would not symbolize fails here.
export KAS_WORK_DIR=${KAS_WORK_DIR:-$(cd .. && pwd)/kas-work}
mkdir -p "$KAS_WORK_DIR"
kas build "$PWD/$kasfile:$PWD/kas/ci.yml"
