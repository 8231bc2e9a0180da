# flowseg for the NeurIPS 2022 cell segmentation challenge's docker protocol:
#   docker build -t flowseg .
#   docker container run --gpus="device=0" -m 28g --name flowseg --rm \
#     -v $PWD/inputs/:/workspace/inputs/ -v $PWD/outputs/:/workspace/outputs/ \
#     flowseg:latest /bin/bash -c "sh predict.sh"
#
# BASE: an official PyTorch runtime image with CUDA by default; any Debian/Python >= 3.10 base
# with pip works for a CPU build (--build-arg BASE=...). A wheelhouse in docker/wheelhouse/ makes
# the build offline: `pip wheel --wheel-dir docker/wheelhouse torch==2.13.0 .` (flowseg's own wheel
# and every dependency, the CPU torch included); scripts/docker_smoke.sh does it.
ARG BASE=pytorch/pytorch:2.4.1-cuda12.1-cudnn9-runtime

# Stage 1 installs flowseg into a virtual environment that sees the base's packages (the CUDA
# base's own torch satisfies flowseg's range and is not installed twice). The wheelhouse and the
# sources stay in this stage: only the environment is copied into the final image.
FROM ${BASE} AS build
ENV PIP_BREAK_SYSTEM_PACKAGES=1 PIP_DISABLE_PIP_VERSION_CHECK=1
COPY docker/wheelhouse /tmp/wheelhouse
COPY pyproject.toml README.md /tmp/src/
COPY flowseg /tmp/src/flowseg
RUN set -eu; \
    python3 -m venv --system-site-packages /opt/flowseg; \
    if ls /tmp/wheelhouse/flowseg-*.whl >/dev/null 2>&1; then \
        /opt/flowseg/bin/pip install --no-cache-dir --no-index --find-links /tmp/wheelhouse flowseg; \
    else \
        /opt/flowseg/bin/pip install --no-cache-dir /tmp/src; \
    fi

FROM ${BASE}
COPY --from=build /opt/flowseg /opt/flowseg
ENV PATH=/opt/flowseg/bin:${PATH} PYTHONDONTWRITEBYTECODE=1
# Compile and cache numba's kernels now, so that the first image does not pay for it.
RUN python3 -c "import numpy as np; from flowseg.representation.flows import labels_to_flows; \
from flowseg.representation.masks import masks_from_flows; from flowseg.metrics import match_labels; \
x = np.zeros((64, 64), np.uint32); x[10:30, 10:30] = 1; x[30:50, 20:40] = 2; \
m = masks_from_flows(labels_to_flows(x) * 5, np.where(x > 0, 5.0, -5.0)); \
print('kernels cached, round trip F1', match_labels(x, m).f1)"
WORKDIR /workspace
COPY predict.sh /workspace/predict.sh
