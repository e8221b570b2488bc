"""The production settings and the commands docker-compose.yml runs, exercised outside Docker."""

from __future__ import annotations

import os
import re
import runpy
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from tests.conftest import need_service
from tests.slow_clients import (
    NGINX_SITE,
    gunicorn_args,
    nginx_binary,
    nginx_command,
    nginx_config,
    shipped_gunicorn_command,
)
from tests.workers import free_port

ROOT = Path(__file__).resolve().parent.parent


def production_env(tmp_path, **overrides) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "DATABASE_", "CELERY_", "CACHE_"))}
    env.update(
        DJANGO_SETTINGS_MODULE="config.settings.production",
        DJANGO_SECRET_KEY="a-production-secret-key-that-is-long-and-random-0123456789abcdef",
        DATABASE_URL=f"sqlite:///{tmp_path}/prod.sqlite3",
        CELERY_BROKER_URL="memory://",
        ALLOWED_HOSTS="127.0.0.1,localhost",
        MARKETPLACE_VAR_DIR=str(tmp_path),
    )
    env.update(overrides)
    return {k: v for k, v in env.items() if v is not None}


def manage(env, *args) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )


@pytest.mark.parametrize("missing", ["DJANGO_SECRET_KEY", "DATABASE_URL", "CELERY_BROKER_URL", "ALLOWED_HOSTS"])
def test_production_refuses_to_start_without_its_settings(tmp_path, missing):
    result = manage(production_env(tmp_path, **{missing: None}), "check")
    assert result.returncode != 0
    assert f"Set the {missing} environment variable" in result.stderr


def test_production_settings_pass_check_deploy(tmp_path):
    result = manage(production_env(tmp_path), "check", "--deploy", "--fail-level", "WARNING")
    assert result.returncode == 0, result.stdout + result.stderr


def test_gunicorn_serves_healthz_as_the_web_container_does(tmp_path):
    # The Dockerfile's CMD (config/gunicorn.py), on a free loopback port instead of 0.0.0.0:8000.
    port = free_port()
    env = production_env(tmp_path)
    server = subprocess.Popen(
        gunicorn_args(port),
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        body = None
        for _ in range(50):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as response:
                    body = response.read().decode()
                break
            except OSError:
                time.sleep(0.2)
        assert body is not None, "gunicorn did not answer /healthz"
        assert '"database": "ok"' in body
    finally:
        server.terminate()
        server.wait(timeout=10)


def test_the_image_and_the_compose_web_service_start_gunicorn_from_its_config_file():
    # One configuration (config/gunicorn.py: gthread workers, deadlines for slow clients), which the
    # tests start gunicorn with too (tests/slow_clients.gunicorn_args).
    command = shipped_gunicorn_command()
    assert command == ["gunicorn", "-c", "config/gunicorn.py", "config.wsgi:application"]
    stack = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    assert stack["web"]["command"] == command


def test_compose_stack_has_one_beat_unpublished_redis_and_migrations_once():
    stack = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    assert set(stack) == {"postgres", "redis", "migrate", "web", "worker", "beat", "proxy"}
    assert "ports" not in stack["redis"]
    assert stack["beat"]["deploy"]["replicas"] == 1
    assert stack["migrate"]["restart"] == "no"
    for name in ("web", "worker", "beat"):
        assert stack[name]["depends_on"]["migrate"] == {"condition": "service_completed_successfully"}
    for name in ("postgres", "redis", "web", "proxy"):
        assert "healthcheck" in stack[name]
    assert stack["worker"]["command"][:3] == ["celery", "-A", "config"]


def test_compose_publishes_only_the_proxy_and_the_app_counts_it_in_x_forwarded_for():
    stack = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    published = {name for name, service in stack.items() if "ports" in service}
    assert published == {"proxy"}  # gunicorn only behind nginx, which buffers slow clients
    assert set(stack["proxy"]["ports"]) == {"80:80", "443:443"}
    assert "./config/nginx/marketplace.conf:/etc/nginx/conf.d/default.conf:ro" in stack["proxy"]["volumes"]
    assert "${TLS_CERT_DIR:-./certs}:/etc/nginx/certs:ro" in stack["proxy"]["volumes"]
    assert stack["proxy"]["depends_on"]["web"] == {"condition": "service_healthy"}
    assert stack["web"]["environment"]["NUM_PROXIES"] == 1  # DRF's throttles take nginx's entry
    assert stack["web"]["environment"]["SECURE_SSL_REDIRECT"] == "${SECURE_SSL_REDIRECT:-1}"


def test_nginx_gunicorn_and_django_refuse_bodies_over_the_same_size():
    from django.conf import settings

    site = NGINX_SITE.read_text()
    (nginx_kib,) = re.findall(r"client_max_body_size (\d+)k;", site)
    worker = runpy.run_path(str(ROOT / "config" / "gunicorn.py"))["worker_class"]
    assert int(nginx_kib) * 1024 == worker.max_body_bytes == settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    assert "proxy_request_buffering on;" in site
    assert "proxy_buffering on;" in site


def test_the_shipped_nginx_config_passes_nginx_t(tmp_path):
    # config/nginx/marketplace.conf as the nginx image includes it, with the test's ports, a
    # self-signed certificate and a loopback gunicorn (tests/slow_clients.nginx_config);
    # tests/reliability/test_slow_clients.py runs it.
    binary = nginx_binary()
    if binary is None:
        need_service("nginx is not installed (make tools installs Debian's): this test runs nginx -t")
    config = nginx_config(tmp_path, http_port=free_port(), https_port=free_port(), web_port=free_port())
    result = subprocess.run(nginx_command(binary, config, "-t"), capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "test is successful" in result.stderr


def test_openapi_schema_generates_without_warnings(tmp_path):
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings.test"}
    result = subprocess.run(
        [sys.executable, "manage.py", "spectacular", "--fail-on-warn", "--file", str(tmp_path / "schema.yml")],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr


def test_the_image_build_compiles_the_engine_into_its_cache_for_later_processes(tmp_path):
    # The Dockerfile's build step, then a process as the containers start one: it must load the
    # compiled simplex and inference code (each function Python calls) from NUMBA_CACHE_DIR, not compile
    # them again.
    dockerfile = (ROOT / "Dockerfile").read_text()
    build = "from matching.compiled import warm_up; warm_up()"
    assert build in dockerfile
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path / "numba")}
    subprocess.run([sys.executable, "-c", build], cwd=ROOT, env=env, check=True, timeout=300)
    assert list((tmp_path / "numba").rglob("*.nbi")), "no compiled functions were cached"
    later = (
        "from matching.compiled import warm_up; warm_up(); "
        "from matching.flow.simplex import _pivots; "
        "from matching.substitution_select import _search, cheapest_option, cover_items, cover_plan, plan_of; "
        "from matching.substitution_select import sort_segments; "
        "from matching.substitution_bound import _cheapest_covers, _cheapest_first, _least_class_by_demand; "
        "from matching.substitution_bound import _least_by_demand, _listing_costs, _most_tokens_each; "
        "from matching.substitution_matrix import rules_matrix; "
        "fs = (_pivots, cover_items, cover_plan, plan_of, _search, _cheapest_covers, _most_tokens_each, "
        "_least_class_by_demand, _cheapest_first, rules_matrix, cheapest_option, sort_segments, _least_by_demand, "
        "_listing_costs); "
        "print(*(len(f.stats.cache_hits) for f in fs), *(len(f.stats.cache_misses) for f in fs))"
    )
    out = subprocess.run([sys.executable, "-c", later], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert list(map(int, out.stdout.split())) == [1] * 14 + [0] * 14, out.stderr


def test_every_long_running_service_restarts_and_the_worker_is_a_prefork_pool():
    # Docker starts a service that exits (the worker, before kombu was patched: config/kombu_patch.py)
    # again; only migrate, which runs once, must not be.
    from tests.workers import compose_services

    stack = compose_services()
    assert {"postgres", "redis", "web", "worker", "beat"} <= set(stack)
    for name, service in stack.items():
        expected = {"no"} if name == "migrate" else {"always", "unless-stopped"}
        assert service.get("restart") in expected, f"{name}: restart {service.get('restart')!r}"
    # tests/reliability/test_worker_outage.py runs this very command (tests.workers.compose_start),
    # so what it shows of the worker holds for this one: prefork, several processes, messages in flight.
    command = stack["worker"]["command"]
    assert command[:4] == ["celery", "-A", "config", "worker"]
    assert (option_of(command, "--pool", "-P") or "prefork") == "prefork", command
    assert int(option_of(command, "--concurrency", "-c") or 0) >= 2, command


def option_of(command: list[str], *names: str) -> str | None:
    """The value ``command`` gives option ``names`` (``--name value`` or ``--name=value``), or None."""
    for word, following in zip(command, [*command[1:], None], strict=True):
        if word in names:
            return following
        for name in names:
            if word.startswith(f"{name}="):
                return word.split("=", 1)[1]
    return None
