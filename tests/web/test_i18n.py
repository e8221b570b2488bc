"""中文 and English, China Standard Time, one format for money (issue 18).

The catalogue walk: every string marked for translation is in the Chinese catalogue, translated,
not fuzzy, and compiled (``manage.py catalogue --check``; it needs GNU gettext's xgettext, which
``make tools`` installs).
"""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from django.core.management import call_command
from django.utils import translation

from marketplace.web import formatting
from tests.conftest import need_service


@pytest.mark.django_db
def test_every_marked_string_is_in_the_chinese_catalogue_translated_and_compiled():
    if shutil.which("xgettext") is None:
        need_service("the catalogue check needs GNU gettext's xgettext (apt-get install gettext)")
    call_command("catalogue", check=True)


@pytest.mark.django_db
def test_a_browser_asking_for_chinese_gets_chinese_and_the_lang_attribute(client):
    page = client.get("/signin/", HTTP_ACCEPT_LANGUAGE="zh-CN,zh;q=0.9,en;q=0.5")
    html = page.content.decode()
    assert '<html lang="zh-Hans">' in html
    assert "算力市场" in html
    english = client.get("/signin/", HTTP_ACCEPT_LANGUAGE="en-GB,en;q=0.9")
    assert '<html lang="en">' in english.content.decode()
    assert "GPU marketplace" in english.content.decode()


@pytest.mark.django_db
def test_the_language_switch_persists_over_the_browser_language(client):
    answer = client.post("/i18n/setlang/", {"language": "zh-hans", "next": "/signin/"})
    assert answer.status_code == 302
    assert answer["Location"] == "/signin/"
    cookie = answer.cookies["marketplace_language"]
    assert cookie.value == "zh-hans"
    assert int(cookie["max-age"]) >= 365 * 24 * 3600 - 1
    # The browser still asks for English; the switch wins.
    page = client.get("/signin/", HTTP_ACCEPT_LANGUAGE="en")
    assert '<html lang="zh-Hans">' in page.content.decode()


@pytest.mark.django_db
def test_api_errors_follow_accept_language_and_api_times_stay_utc(client):
    zh = client.get("/api/v1/matches/", HTTP_ACCEPT_LANGUAGE="zh-CN")
    en = client.get("/api/v1/matches/", HTTP_ACCEPT_LANGUAGE="en")
    assert zh.status_code == en.status_code == 401
    assert zh.json()["detail"] != en.json()["detail"]  # DRF's own catalogue has the Chinese
    regions = client.get("/api/v1/regions/", HTTP_ACCEPT_LANGUAGE="zh-CN")
    assert regions.status_code == 200


def test_money_has_the_yuan_sign_two_decimals_and_thousands_separators():
    assert formatting.cny(Decimal("1234.5")) == "¥1,234.50"
    assert formatting.cny(Decimal("0.005")) == "¥0.01"  # half up, as the settlement rounds
    assert formatting.cny(Decimal("-3")) == "-¥3.00"
    assert formatting.cny(None) == "—"
    with translation.override("en"):
        assert formatting.cny_per_gpu_hour(Decimal("4.8")) == "¥4.80/GPU·h"
    with translation.override("zh-hans"):
        assert formatting.cny_per_gpu_hour(Decimal("4.8")) == "¥4.80/卡·时"


def test_times_on_pages_are_china_standard_time_and_say_so():
    moment = datetime(2026, 12, 4, 1, 0, tzinfo=UTC)
    with translation.override("en"):
        assert formatting.cst(moment) == "2026-12-04 09:00 CST"
    with translation.override("zh-hans"):
        assert formatting.cst(moment) == "2026-12-04 09:00 北京时间"


@pytest.mark.django_db
def test_names_are_in_the_readers_language(reference):
    from marketplace.models import Region

    region = Region.objects.exclude(name_zh="").first()
    with translation.override("zh-hans"):
        assert formatting.local_name(region) == region.name_zh
    with translation.override("en"):
        assert formatting.local_name(region) == region.name


@pytest.mark.django_db
def test_a_page_for_another_role_refuses_in_the_readers_language(client, buyer):
    from tests.conftest import member

    client.force_login(member("buy", buyer))
    zh = client.get("/provider/", HTTP_ACCEPT_LANGUAGE="zh-CN")
    assert zh.status_code == 403
    assert "此页面仅供算力提供方账户使用。" in zh.content.decode()
    en = client.get("/provider/", HTTP_ACCEPT_LANGUAGE="en")
    assert "This page is for provider accounts." in en.content.decode()


def test_a_chinese_page_request_leaves_its_language_active_in_the_test_thread(client, db):
    """What Django's LocaleMiddleware does under the test client: the next test below checks that
    tests/conftest.py's reset undoes it (the two run in file order)."""
    client.get("/", HTTP_ACCEPT_LANGUAGE="zh-hans")
    assert translation.get_language() == "zh-hans"


def test_the_next_test_starts_in_the_default_language_again():
    assert translation.get_language() == "en"
