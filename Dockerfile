# One image for every jobwire process: api, worker, migrate (pick with the command).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app
COPY pyproject.toml README.md schema.sql ./
COPY jobwire ./jobwire
COPY service ./service
COPY workers ./workers
# editable, so `jobwire migrate` finds schema.sql next to the packages
RUN pip install -e . && useradd --system --no-create-home jobwire
USER jobwire
EXPOSE 8000
ENTRYPOINT ["jobwire"]
CMD ["api", "--host", "0.0.0.0"]
