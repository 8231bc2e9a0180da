#!/bin/sh
# The challenge's entry point: docker container run ... NAME:latest /bin/bash -c "sh predict.sh"
# Segments every image in $FLOWSEG_INPUTS (default /workspace/inputs) into
# $FLOWSEG_OUTPUTS/<name>_label.tiff (default /workspace/outputs). Extra arguments go to
# `flowseg predict` (for example --tile 1024 --batch 2).
set -eu
inputs="${FLOWSEG_INPUTS:-/workspace/inputs}"
outputs="${FLOWSEG_OUTPUTS:-/workspace/outputs}"
python="$(command -v python3 || command -v python)"

if [ ! -d "$inputs" ]; then
    echo "predict.sh: input folder $inputs does not exist" >&2
    exit 1
fi
if [ -z "$(ls -A "$inputs")" ]; then
    echo "predict.sh: $inputs is empty: nothing to segment"
    exit 0
fi
mkdir -p "$outputs"
exec "$python" -m flowseg predict -i "$inputs" -o "$outputs" "$@"
