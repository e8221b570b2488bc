"""The home page and capacity board in a real browser, in English and Chinese, on a desktop and a
phone: no horizontal scrolling, every column of the region table on screen (as a table on the
desktop, as labelled cards on the phone), badges on the map that do not overlap, no console errors
or CSP violations. Screenshots: board-home-{desktop,phone}-{en,zh}.png, board-empty-desktop-en.png."""

from __future__ import annotations

import itertools
from decimal import Decimal

import pytest

from tests.web.browsing import DESKTOP, PHONE, Session

VIEWPORTS = {"desktop": DESKTOP, "phone": PHONE}
#: What each language calls the price and a region, as the page must show them.
EXPECTED = {
    "en": {"region": "Zhongwei cluster (Ningxia hub)", "price": "¥5.80/GPU·h", "cta": "List your GPUs"},
    "zh": {"region": "中卫数据中心集群（宁夏枢纽）", "price": "¥5.80/卡·时", "cta": None},
}


def _cells_off_screen(page) -> dict:
    """Cells of a region with capacity, in the table (or its card), shown but off the viewport."""
    return page.evaluate(
        """() => {
            const width = document.documentElement.clientWidth;
            const out = [];
            let shown = 0;
            for (const cell of document.querySelectorAll('#region-ningxia-zhongwei > *')) {
                const style = getComputedStyle(cell);
                if (style.display === 'none') continue;
                shown += 1;
                const box = cell.getBoundingClientRect();
                if (box.width === 0 || box.left < 0 || box.right > width + 0.5) {
                    out.push(cell.dataset.label + ': ' + box.left + '..' + box.right);
                }
            }
            return {off: out, shown: shown};
        }"""
    )


def _visible_badges(page) -> list[dict]:
    return page.evaluate(
        """() => [...document.querySelectorAll('.map .labels')]
            .filter(g => getComputedStyle(g).display !== 'none')
            .flatMap(g => [...g.querySelectorAll('rect')].map(r => {
                const b = r.getBoundingClientRect();
                const t = r.nextElementSibling.getBoundingClientRect();
                return {left: b.left, right: b.right, top: b.top, bottom: b.bottom, text: t.height};
            }))"""
    )


@pytest.mark.parametrize("lang", ["en", "zh"])
@pytest.mark.parametrize("size", ["desktop", "phone"])
def test_board_and_home_show_every_column_without_overflow(browser, live_server, make_listing, lang, size):
    from playwright.sync_api import expect

    make_listing(region="ningxia-zhongwei", gpu_count=32, price_per_gpu_hour=Decimal("5.80"))
    make_listing(region="anhui-wuhu", gpu_count=8, price_per_gpu_hour=Decimal("7.25"))
    make_listing(region="yrd-qingpu-wujiang-jiashan", gpu_count=16, price_per_gpu_hour=Decimal("8.10"))
    make_listing(region="inner-mongolia-horinger", gpu_count=24, price_per_gpu_hour=Decimal("5.10"))
    make_listing(region="inner-mongolia-ulanqab", gpu_count=8, price_per_gpu_hour=Decimal("5.30"))
    visitor = Session(browser, live_server.url, lang=lang, **VIEWPORTS[size])
    visitor.page.goto("/?origin=shanghai")
    expected = EXPECTED[lang]
    row = visitor.page.locator("#region-ningxia-zhongwei")
    expect(row).to_contain_text(expected["region"])
    expect(row).to_contain_text(expected["price"])
    if expected["cta"]:
        expect(visitor.page.locator(".intro .cta")).to_contain_text(expected["cta"])
    expect(visitor.page.locator(".idle-now")).to_contain_text("88")
    assert "gansu-qingyang" not in visitor.page.locator("main").inner_text()

    visitor.assert_no_overflow()
    cells = _cells_off_screen(visitor.page)
    assert cells["off"] == []
    assert cells["shown"] == (9 if size == "desktop" else 8)  # the number is the card's title on a phone
    badges = _visible_badges(visitor.page)
    assert len(badges) == 21
    for a, b in itertools.combinations(badges, 2):
        assert a["right"] <= b["left"] or b["right"] <= a["left"] or a["bottom"] <= b["top"] or b["bottom"] <= a["top"]
    assert min(badge["text"] for badge in badges) >= 11, "badge numbers must be readable (≥ 11 px)"
    visitor.shot(f"board-home-{size}-{lang}")
    assert not visitor.problems, "\n".join(visitor.problems)


def test_the_empty_board_says_what_to_do(browser, live_server, reference):
    from playwright.sync_api import expect

    visitor = Session(browser, live_server.url, lang="en", **DESKTOP)
    visitor.page.goto("/?origin=shanghai")
    empty = visitor.page.locator(".empty-state")
    expect(empty).to_contain_text("No idle GPUs are listed yet.")
    expect(empty.get_by_role("link", name="list your GPUs")).to_have_attribute("href", "/signup/?role=provider")
    visitor.assert_no_overflow()
    visitor.shot("board-empty-desktop-en")
    assert not visitor.problems, "\n".join(visitor.problems)


def test_no_width_between_phone_and_desktop_scrolls_sideways(browser, live_server, make_listing):
    """The layout switches at 640 px (two cards abreast), 760 px (big badges to small) and 1000 px
    (cards to table): on either side of each, and at common tablets' widths, nothing leaves the
    viewport."""
    make_listing(region="ningxia-zhongwei", gpu_count=32, price_per_gpu_hour=Decimal("5.80"))
    for lang in ("en", "zh"):
        visitor = Session(browser, live_server.url, lang=lang, **PHONE)
        visitor.page.goto("/?origin=shanghai")
        for width in (320, 414, 600, 640, 759, 760, 800, 999, 1000, 1024):
            visitor.page.set_viewport_size({"width": width, "height": 900})
            assert visitor.overflow() <= 0, (lang, width, visitor.overflow())
            assert _cells_off_screen(visitor.page)["off"] == [], (lang, width)
            if width == 800:
                visitor.shot(f"board-home-tablet-{lang}")
        assert not visitor.problems, "\n".join(visitor.problems)


@pytest.mark.parametrize("lang", ["en", "zh"])
@pytest.mark.parametrize("size", ["desktop", "phone"])
def test_a_models_board_shows_its_clearing_prices_without_overflow(
    browser, live_server, make_listing, make_request, lang, size
):
    """With a GPU model chosen, the clearing price column (one more cell per row) still fits."""
    from playwright.sync_api import expect

    from marketplace.services.rounds import round_run

    make_listing(region="yrd-qingpu-wujiang-jiashan", gpu_count=8, price_per_gpu_hour=Decimal("6.00"))
    make_listing(region="ningxia-zhongwei", gpu_count=16, price_per_gpu_hour=Decimal("7.00"))
    make_request(latency_class="standard", gpus_per_replica=1, replicas=12)
    round_run(shard="h20", trigger="manual")
    visitor = Session(browser, live_server.url, lang=lang, **VIEWPORTS[size])
    visitor.page.goto("/?origin=shanghai&gpu_model=h20")
    expect(visitor.page.locator("#region-ningxia-zhongwei td.clearing")).to_contain_text(
        "¥7.00/GPU·h" if lang == "en" else "¥7.00/卡·时"
    )
    visitor.assert_no_overflow()
    cells = _cells_off_screen(visitor.page)
    assert cells["off"] == []
    assert cells["shown"] == (10 if size == "desktop" else 9)
    visitor.shot(f"board-prices-{size}-{lang}")
    assert not visitor.problems, "\n".join(visitor.problems)
