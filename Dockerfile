# The marketplace image: web (gunicorn), Celery worker and beat all run from it.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    DJANGO_SETTINGS_MODULE=config.settings.production \
    NUMBA_CACHE_DIR=/app/var/numba

WORKDIR /app
COPY requirements.lock .
RUN pip install --no-cache-dir --require-hashes -r requirements.lock

COPY . .
# The web pages' htmx and Chart.js, fetched by npm at the versions package-lock.json pins and
# checked against its hashes (bin/fetch_assets.py); npm is only needed while building. Noto CJK
# stays: anything the image renders (the admin's exports, a headless browser) can draw Chinese.
RUN apt-get update && apt-get install -y --no-install-recommends npm fonts-noto-cjk \
 && python bin/fetch_assets.py \
 && apt-get purge -y --auto-remove npm && rm -rf /var/lib/apt/lists/*
# collectstatic needs settings to import, not real services: throwaway values for the build only.
# The engine's network simplex is compiled here into NUMBA_CACHE_DIR, so no process compiles it.
RUN DJANGO_SECRET_KEY=build-only DATABASE_URL=sqlite:////tmp/build.sqlite3 CELERY_BROKER_URL=memory:// \
    ALLOWED_HOSTS=build python manage.py collectstatic --noinput -v0 \
 && python -c "from matching.compiled import warm_up; warm_up()" \
 && useradd --create-home --uid 1000 app && mkdir -p /app/var && chown -R app /app/var

USER app
EXPOSE 8000
# gunicorn as config/gunicorn.py sets it (gthread workers, deadlines for slow clients, port 8000).
CMD ["gunicorn", "-c", "config/gunicorn.py", "config.wsgi:application"]
