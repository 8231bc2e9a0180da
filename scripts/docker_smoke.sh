#!/usr/bin/env bash
# Build the flowseg image and run the challenge's container protocol on the sample images, on the
# CPU, timed against the challenge's tolerance (10 s per image up to 1 MP, 10 s per MP above).
#
#   sudo bash scripts/docker_smoke.sh [SAMPLES_DIR]     (default ../shared/data)
#
# Needs root, Debian's docker.io and debootstrap (apt-get install docker.io debootstrap), pip on
# the host (for the wheelhouse; flowseg itself need not be installed there), and a few minutes. It starts dockerd if none is running (and stops only the one it started), makes a
# Debian bookworm base image with debootstrap if absent (no registry is needed), prepares a
# wheelhouse on the host (pip wheel, the CPU torch included) so that the build needs no network
# from inside the container, builds, then runs the exact command line the challenge uses, without
# --gpus when there is no GPU, with --network none.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)
samples=$(realpath "${1:-../shared/data}")
base=flowseg-base:bookworm
image=flowseg:latest
work=$(mktemp -d /tmp/flowseg-docker.XXXXXX)
started_dockerd=""

cleanup() {
    if [ -n "$started_dockerd" ]; then
        kill "$started_dockerd" 2>/dev/null || true
        wait "$started_dockerd" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT

missing=()
for tool in docker dockerd debootstrap; do
    command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "docker_smoke.sh: ${missing[*]} not found: apt-get install docker.io debootstrap" >&2
    exit 1
fi
python3 -m pip --version >/dev/null 2>&1 \
    || { echo "docker_smoke.sh: python3 -m pip not found (needed for the wheelhouse)" >&2; exit 1; }

now_ms() { echo $(( $(date +%s%N) / 1000000 )); }

if ! docker info >/dev/null 2>&1; then
    dockerd >"$work/dockerd.log" 2>&1 &
    started_dockerd=$!
    for _ in $(seq 60); do docker info >/dev/null 2>&1 && break; sleep 1; done
    if ! docker info >/dev/null 2>&1; then
        echo "docker_smoke.sh: dockerd did not start within 60 s; its last lines:" >&2
        tail -n 5 "$work/dockerd.log" >&2
        exit 1
    fi
fi

if ! docker image inspect "$base" >/dev/null 2>&1; then
    echo "making $base with debootstrap ..."
    debootstrap --variant=minbase --include=python3,python3-venv,python3-pip bookworm \
        "$work/rootfs" >"$work/debootstrap.log" 2>&1
    rm -rf "$work/rootfs/var/cache/apt/archives/"*.deb "$work/rootfs/var/lib/apt/lists/"*
    tar -C "$work/rootfs" -c . | docker import - "$base" >/dev/null
    rm -rf "$work/rootfs"
fi

echo "preparing the wheelhouse (CPU torch and every dependency) ..."
rm -f docker/wheelhouse/*.whl
python3 -m pip wheel --quiet --wheel-dir docker/wheelhouse torch==2.13.0 . >"$work/wheel.log" 2>&1 \
    || { tail -n 20 "$work/wheel.log"; exit 1; }

start=$(now_ms)
docker build --quiet --network host --build-arg BASE="$base" -t "$image" . >"$work/build.log" 2>&1 \
    || { tail -n 20 "$work/build.log"; exit 1; }
build_s=$(( ($(now_ms) - start) / 1000 ))
rm -f docker/wheelhouse/*.whl
size_mb=$(( $(docker image inspect -f '{{.Size}}' "$image") / 1000000 ))
echo "image $image: ${size_mb} MB, built in ${build_s} s"

in_image() {  # python3 code run by the image's own Python, the samples mounted read-only
    docker container run --rm --network none -v "$samples/":/samples/:ro -v "$work/":/work/ \
        --entrypoint python3 "$image" -c "$1"
}

echo "the image's imports: what predict loads, and whether torch is among it (it should not be)"
in_image "import sys, time; t = time.perf_counter(); import flowseg.apps.cli, flowseg.apps.predict; \
print(f'import flowseg.apps.predict {time.perf_counter() - t:.2f} s; torch loaded: {\"torch\" in sys.modules}')"

gpus=()
if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
    gpus=(--gpus="device=0")
fi

run_challenge() {  # the challenge's command line, on folder $1 into folder $2
    docker container run "${gpus[@]}" -m 28g --network none --name flowseg-smoke --rm \
        -v "$1/":/workspace/inputs/ -v "$2/":/workspace/outputs/ \
        "$image" /bin/bash -c "sh predict.sh"
}

echo
echo "| image | MP | container start-to-exit s | s/MP | tolerance s | within |"
echo "|---|---|---|---|---|---|"
mkdir -p "$work/all_out"
for path in "$samples"/images/*; do
    name=$(basename "$path")
    mkdir -p "$work/one/$name" "$work/out/$name"
    cp "$path" "$work/one/$name/"
    mp=$(in_image "from flowseg.io import read_pixels; s = read_pixels('/samples/images/$name').shape; \
print(s[1] * s[2] / 1e6)")
    start=$(now_ms)
    run_challenge "$work/one/$name" "$work/out/$name" >"$work/run_$name.log" 2>&1
    ms=$(( $(now_ms) - start ))
    python3 -c "mp, s = $mp, $ms / 1000; t = max(10.0, 10.0 * mp); \
print(f'| $name | {mp:.2f} | {s:.1f} | {s / mp:.1f} | {t:.0f} | {\"yes\" if s <= t else \"NO\"} |')"
    cp "$work/out/$name/"*_label.tiff "$work/all_out/"
done
echo
docker container run --rm --network none -v "$samples/":/samples/:ro -v "$work/all_out/":/pred/:ro \
    "$image" python3 -m flowseg evaluate --pred /pred --gt /samples/labels | tail -n 3

echo
echo "bad input: a corrupt file and an empty file beside the good images"
mkdir -p "$work/bad_in" "$work/bad_out"
cp "$samples"/images/* "$work/bad_in/"
printf 'garbage' >"$work/bad_in/corrupt.png"
: >"$work/bad_in/empty.tif"
set +e
run_challenge "$work/bad_in" "$work/bad_out" >"$work/bad.log" 2>&1
code=$?
set -e
echo "exit code $code; written: $(ls "$work/bad_out" | tr '\n' ' ')"
grep -E "failed:|written" "$work/bad.log" || true

echo
echo "empty input folder"
mkdir -p "$work/empty_in" "$work/empty_out"
set +e
run_challenge "$work/empty_in" "$work/empty_out" 2>&1 | tail -n 1
echo "exit code ${PIPESTATUS[0]}"
set -e
