"""The home page and capacity board through Django's test client, in Chinese and English: names
not codes, prices as ¥ with two decimals, an empty state that says what to do, the orientation's
calls to action for each kind of visitor, and the page's title."""

from __future__ import annotations

import re
from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from marketplace.models import GpuModel
from marketplace.services.rounds import round_run
from tests.conftest import member

ZH = {"HTTP_ACCEPT_LANGUAGE": "zh-CN,zh;q=0.9"}
EN = {"HTTP_ACCEPT_LANGUAGE": "en-GB,en;q=0.9"}
CODES = ("ningxia-zhongwei", "anhui-wuhu", "gansu-qingyang", "inner-mongolia-horinger")


def page(client: Client, url: str = "/?origin=shanghai", **headers) -> str:
    response = client.get(url, **headers)
    assert response.status_code == 200
    return response.content.decode()


def title(html: str) -> str:
    return re.search(r"<title>(.*?)</title>", html, re.S).group(1).strip()


def visible(html: str) -> str:
    """The page's text outside tags and attributes (ids and URLs may carry codes)."""
    body = html.split("<main", 1)[1]
    return re.sub(r"<[^>]+>", " ", body)


@pytest.fixture
def listed(make_listing):
    make_listing(region="ningxia-zhongwei", gpu_count=32, price_per_gpu_hour=Decimal("5.8"))
    make_listing(region="anhui-wuhu", gpu_count=8, price_per_gpu_hour=Decimal("999.5"))
    make_listing(region="guizhou-guian", gpu_model="ascend-910b", gpu_count=8, price_per_gpu_hour=Decimal("4.1"))


def test_the_board_in_english_shows_names_and_yuan_with_two_decimals(listed):
    html = page(Client(), **EN)
    assert title(html) == "Capacity board · GPU marketplace"
    text = visible(html)
    assert "Zhongwei cluster (Ningxia hub)" in text
    assert "¥5.80/GPU·h" in text
    assert "¥999.50/GPU·h" in text
    assert "5.8000" not in text
    assert not any(code in text for code in CODES)
    assert "Ningxia" in text
    assert "standard" in text
    assert "48 idle GPUs across 21 regions" in text


def test_the_board_in_chinese_shows_chinese_names_provinces_and_latency_classes(listed):
    html = page(Client(), **ZH)
    assert title(html) == "算力看板 · 算力市场"
    text = visible(html)
    assert "中卫数据中心集群（宁夏枢纽）" in text
    assert "¥5.80/卡·时" in text
    assert "标准" in text
    assert "实时" in text
    assert "贵州" in text
    assert "安徽" in text
    assert "Zhongwei cluster" not in text
    assert not any(code in text for code in CODES)
    assert "当前空闲" in text


def test_gpu_models_are_named_in_the_readers_language(listed):
    html = page(Client(), "/?origin=shanghai&gpu_model=ascend-910b", **ZH)
    assert "华为昇腾 910B 64GB" in visible(html)
    html = page(Client(), "/?origin=shanghai&gpu_model=ascend-910b", **EN)
    assert "Huawei Ascend 910B 64GB" in visible(html)
    assert GpuModel.objects.get(code="h20").name_zh == "NVIDIA H20 96GB"


def test_an_empty_board_tells_providers_to_list_their_gpus(reference):
    html = page(Client(), **EN)
    text = visible(html)
    assert "No idle GPUs are listed yet." in text
    assert 'href="/signup/?role=provider">list your GPUs</a>' in html
    assert "Idle right now: 0 GPUs in 0 regions." in re.sub(r"\s+", " ", text)
    assert "空闲 GPU" in visible(page(Client(), **ZH))
    assert "目前还没有挂牌的空闲 GPU。" in visible(page(Client(), **ZH))


def test_a_board_filtered_to_nothing_says_so_and_offers_every_model(listed):
    html = page(Client(), "/?origin=beijing&gpu_model=h100", **EN)
    text = re.sub(r"\s+", " ", visible(html))
    assert "No idle NVIDIA H100 SXM 80GB GPUs right now." in text
    assert "48 GPUs of other models are idle." in text
    assert 'href="/?origin=beijing">Show every GPU model</a>' in html
    assert "Idle right now: 48 GPUs in 3 regions." in text  # the home page's figure is of every model


def test_a_signed_in_provider_is_sent_to_the_listing_form_from_the_empty_board(reference, provider):
    client = Client()
    client.force_login(member("prov", provider))
    html = page(client, **EN)
    assert 'href="/provider/listings/new/">list your GPUs</a>' in html
    assert 'href="/provider/listings/new/">List your GPUs</a>' in html


@pytest.mark.parametrize(
    ("who", "links"),
    [
        ("anonymous", ["/signup/?role=provider", "/signup/?role=buyer", "/signin/"]),
        ("provider", ["/provider/listings/new/", "/provider/"]),
        ("buyer", ["/buyer/requests/new/", "/buyer/"]),
        ("staff", ["/monitor/"]),
    ],
)
def test_the_home_page_orients_each_visitor(reference, provider, buyer, who, links):
    client = Client()
    if who == "provider":
        client.force_login(member("prov", provider))
    elif who == "buyer":
        client.force_login(member("buy", buyer))
    elif who == "staff":
        client.force_login(get_user_model().objects.create_user(username="staff", password="x", is_staff=True))
    html = page(client, "/", **EN)
    intro = html.split('class="intro card"', 1)[1].split("</section>", 1)[0]
    assert "Rent idle GPUs in China's data centres, matched by latency" in intro
    assert re.findall(r'href="([^"]+)"', intro) == links
    zh = page(client, "/", **ZH)
    assert "租用国内数据中心的空闲 GPU，按时延撮合" in zh


def test_the_board_shows_a_models_clearing_price_in_both_languages(make_listing, make_request):
    """After a round, the board of one GPU model shows each region's clearing price in ¥ per GPU-hour:
    the full cheap hub its ask plus its rent, the western hub with GPUs left over its ask."""
    make_listing(region="yrd-qingpu-wujiang-jiashan", gpu_count=8, price_per_gpu_hour=Decimal("6.00"))
    make_listing(region="ningxia-zhongwei", gpu_count=16, price_per_gpu_hour=Decimal("7.00"))
    make_request(latency_class="standard", gpus_per_replica=1, replicas=12)
    round_run(shard="h20", trigger="manual")
    html = page(Client(), "/?origin=shanghai&gpu_model=h20", **EN)
    row = re.search(r'<tr id="region-yrd-qingpu-wujiang-jiashan".*?</tr>', html, re.S).group(0)
    assert re.search(r'data-label="Clearing price">¥7\.\d\d/GPU·h<', row)
    west = re.search(r'<tr id="region-ningxia-zhongwei".*?</tr>', html, re.S).group(0)
    assert 'data-label="Clearing price">¥7.00/GPU·h<' in west
    zh = page(Client(), "/?origin=shanghai&gpu_model=h20", **ZH)
    assert "出清价" in zh
    assert "¥7.00/卡·时" in zh
    # Without a GPU model there is no one price to show: no column.
    every = page(Client(), "/?origin=shanghai", **EN)
    assert "Clearing price" not in every
    assert "{#" not in html


@pytest.mark.parametrize("url", ["/?origin=shanghai", "/?origin=shanghai&gpu_model=h20"])
def test_the_board_costs_the_same_queries_whatever_is_listed(make_listing, url):
    make_listing(region="ningxia-zhongwei")
    client = Client()
    client.get(url)  # warm the reference caches
    with CaptureQueriesContext(connection) as few:
        client.get(url)
    for region in ("anhui-wuhu", "guizhou-guian", "hebei-zhangjiakou", "shanghai"):
        make_listing(region=region)
    with CaptureQueriesContext(connection) as many:
        client.get(url)
    assert len(many) == len(few)
