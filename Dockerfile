# The ondata image: `ondata serve` (the API) and `ondata worker` (ingestion) run from it.
# Build: docker build -t ondata .   (docker-compose.yml builds it for the api and worker services)
FROM python:3.11-slim

# No network at run time: the embedding model ships in the image and is exported to ONNX here.
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1 \
    DO_NOT_TRACK=true \
    TOKENIZERS_PARALLELISM=false \
    ONDATA_DATA_DIR=/data

# OCR for scanned PDFs, PDF rasterising, file-type sniffing (the same Debian packages as `make`).
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
       tesseract-ocr tesseract-ocr-eng poppler-utils libmagic1 \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /app
COPY pyproject.toml constraints.txt README.md ./
COPY packaging ./packaging
COPY core ./core
COPY ingest ./ingest
COPY retrieval ./retrieval
COPY api ./api
COPY evaluation ./evaluation

# torch comes from the CPU wheel index: constraints.txt pins the CPU build, and the default
# index would pull gigabytes of CUDA libraries. unstructured's optional torchvision/timm are
# removed as `make setup` does (a CUDA torchvision breaks sentence-transformers).
RUN pip install --extra-index-url https://download.pytorch.org/whl/cpu -c constraints.txt . \
    && pip install -c constraints.txt --no-build-isolation ./packaging/en_core_web_sm \
    && (! python -c 'import torchvision' 2>/dev/null || pip uninstall -y torchvision timm) \
    && python -m retrieval.onnx_export

RUN useradd --system --uid 10001 --home-dir /app ondata \
    && mkdir -p /data && chown ondata /data
USER ondata
VOLUME ["/data"]
EXPOSE 8000

CMD ["ondata", "serve", "--host", "0.0.0.0", "--port", "8000"]
