"""A believable demo market, written through the same services as real users' actions.

Western hubs (cheap power) hold most of the capacity at lower prices; eastern hubs and cities hold
little at higher prices; buyers sit in the eastern demand cities with a mix of latency classes.
Seeded: the same seed gives the same market. Idempotent: an organisation that already has
listings or requests is left as it is.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal

from django.contrib.auth import get_user_model
from django.db import transaction

from marketplace import services
from marketplace.market_time import market_now
from marketplace.models import GpuModel, Membership, Organisation, Region, VoucherProgram
from marketplace.money import FEN, to_fen

DEMO_PASSWORD = "demo"  # noqa: S105 - documented demo login, created under local settings only

#: (provider name, region, GPU models it offers, how many 8-GPU nodes per listing at most)
PROVIDERS = [
    ("Zhongwei Desert Compute", "ningxia-zhongwei", ["h20", "a800", "l40s"], 16),
    ("Ulanqab Green DC", "inner-mongolia-ulanqab", ["h100", "h20", "a100"], 16),
    ("Horinger AI Park", "inner-mongolia-horinger", ["h800", "ascend-910b", "h20"], 12),
    ("Gui'an Mountain Cloud", "guizhou-guian", ["h20", "a100", "rtx4090"], 14),
    ("Qingyang East-Data-West-Compute", "gansu-qingyang", ["ascend-910b", "h20", "l40s"], 12),
    ("Tianfu Compute Hub", "sichuan-tianfu", ["a800", "h20"], 8),
    ("Liangjiang Data Valley", "chongqing", ["rtx4090", "l40s"], 6),
    ("Zhangjiakou Wind Compute", "hebei-zhangjiakou", ["h100", "a800"], 4),
    ("Wuhu Yangtze DC", "anhui-wuhu", ["h20", "l40s"], 3),
    ("Qingpu Lakeside AI", "yrd-qingpu-wujiang-jiashan", ["h100", "h20"], 2),
    ("Shaoguan GBA Compute", "guangdong-shaoguan", ["h20", "rtx4090"], 3),
    ("Shanghai Metro GPU", "shanghai", ["h100", "l40s"], 1),
    ("Central Plains Supercompute", "zhengzhou", ["h20", "ascend-910b"], 2),
]

#: (buyer name, origin city, latency classes its workloads need)
BUYERS = [
    ("Huangpu Chat AI", "shanghai", ["realtime", "interactive", "interactive"]),
    ("Zhongguancun Models", "beijing", ["interactive", "standard", "batch"]),
    ("Nanshan Vision", "shenzhen", ["realtime", "interactive"]),
    ("Pearl River Agents", "guangzhou", ["interactive", "standard"]),
    ("West Lake Commerce AI", "hangzhou", ["interactive", "batch"]),
    ("Jinling Speech", "nanjing", ["realtime", "standard"]),
    ("Optics Valley Labs", "wuhan", ["standard", "batch"]),
    ("Central Plains Inference", "zhengzhou", ["interactive", "batch"]),
]


@dataclass(frozen=True)
class DemoSummary:
    providers: int
    listings: int
    gpus: int
    buyers: int
    requests: int
    programs: int


@transaction.atomic
def demo_market_seed(*, seed: int = 2026) -> DemoSummary:
    """Create the demo providers, listings, buyers and requests that do not exist yet."""
    rng = random.Random(seed)
    regions = {region.code: region for region in Region.objects.all()}
    models = {model.code: model for model in GpuModel.objects.all()}
    if not regions or not models:
        raise RuntimeError("Load the reference data first: manage.py load_reference")
    listings = gpus = requests = 0
    for name, region_code, model_codes, max_nodes in PROVIDERS:
        provider, _ = Organisation.objects.get_or_create(name=name, defaults={"kind": "provider"})
        if provider.listings.exists():
            continue
        for code in model_codes:
            listing = _demo_listing(rng, provider, regions[region_code], models[code], max_nodes)
            listings, gpus = listings + 1, gpus + listing.gpu_count
    for name, origin_code, classes in BUYERS:
        buyer, _ = Organisation.objects.get_or_create(
            name=name, defaults={"kind": "buyer", "province": regions[origin_code].province}
        )
        if buyer.requests.exists():
            continue
        for latency_class in classes:
            _demo_request(rng, buyer, regions[origin_code], models, latency_class)
            requests += 1
    programs = demo_vouchers_seed(regions=regions, models=models)
    return DemoSummary(len(PROVIDERS), listings, gpus, len(BUYERS), requests, programs)


def _demo_listing(rng: random.Random, provider, region: Region, model: GpuModel, max_nodes: int):
    # West sells below the indicative price (cheap power, idle halls); the east above it.
    markup = rng.uniform(0.72, 0.9) if region.is_west else rng.uniform(1.02, 1.3)
    node_size = 8 if model.code != "rtx4090" else rng.choice([4, 8])
    nodes = rng.randint(max(1, max_nodes // 3), max_nodes)
    now = market_now()
    return services.listing_create(
        provider=provider,
        region=region,
        gpu_model=model,
        gpu_count=nodes * node_size,
        gpus_per_node=node_size,
        price_per_gpu_hour=to_fen(model.indicative_price_per_gpu_hour * Decimal(markup)),
        available_from=now - timedelta(hours=1),
        available_until=now + timedelta(days=rng.randint(14, 60)),
    )


def _demo_request(rng: random.Random, buyer, origin: Region, models: dict, latency_class: str):
    model = models[rng.choice(["h100", "h20", "h20", "a800", "l40s", "ascend-910b"])]
    cap_markup = Decimal(str(rng.choice([1.0, 1.1, 1.25, 1.5])))
    return services.request_submit(
        buyer=buyer,
        gpu_model=model,
        gpus_per_replica=rng.choice([1, 2, 4, 8]),
        replicas=rng.randint(1, 6),
        origin=origin,
        latency_class=latency_class,
        max_price_per_gpu_hour=(model.indicative_price_per_gpu_hour * cap_markup).quantize(FEN),
        duration_hours=rng.choice([4, 12, 24, 72, 168]),
        start_by=market_now() + timedelta(hours=rng.randint(2, 48)),
    )


@transaction.atomic
def demo_logins_create() -> list[str]:
    """The logins demo-provider, demo-buyer and demo-admin (staff), password ``demo``; idempotent."""
    users = get_user_model().objects
    logins = [
        ("demo-provider", Organisation.objects.get(name=PROVIDERS[0][0]), False),
        ("demo-buyer", Organisation.objects.get(name=BUYERS[0][0]), False),
        ("demo-admin", None, True),
    ]
    for username, organisation, staff in logins:
        user, created = users.get_or_create(
            username=username, defaults={"email": f"{username}@example.com", "is_staff": staff, "is_superuser": staff}
        )
        if created:
            user.set_password(DEMO_PASSWORD)
            user.save(update_fields=["password"])
        if organisation is not None:
            Membership.objects.get_or_create(user=user, defaults={"organisation": organisation})
    _demo_buyer_voucher(logins[1][1])
    return [username for username, _, _ in logins]


def _demo_buyer_voucher(buyer: Organisation) -> None:
    """Give the demo buyer a Qingyang voucher of its own (the README's tour quotes with it)."""
    program = VoucherProgram.objects.filter(name="Qingyang (Gansu) compute voucher").first()
    if program is not None and not program.vouchers.filter(buyer=buyer).exists():
        services.vouchers_issue(program_id=program.pk, sponsor_provider=None, buyer=buyer)


#: City programmes of the reference data: (city in the file, eligible regions, buyer provinces,
#: minimum spend, budget when the file has none). Shandong is left out: its terms were not found.
CITY_PROGRAMS = {
    "Shanghai": ([], ["Shanghai"], None, None),
    "Beijing": ([], ["Beijing"], None, Decimal("500000000")),
    "Shenzhen": ([], ["Guangdong"], None, None),
    "Hangzhou": (["hangzhou"], ["Zhejiang"], None, None),
    "Chengdu": (["chengdu", "sichuan-tianfu"], [], None, None),
    "Qingyang (Gansu)": (["gansu-qingyang"], [], Decimal("5000"), None),
    "Henan (Zhengzhou)": (["zhengzhou"], ["Henan"], None, None),
}
CLAIMABLE_CODES_PER_PROGRAM = 20


def demo_vouchers_seed(*, regions: dict, models: dict) -> int:
    """The reference file's city programmes with their real percentages, caps and eligibility, and
    the Zhengzhou provider promotion; each with claimable codes. Returns programmes created."""
    from marketplace.services.reference import reference_read

    now = market_now()
    window = {"valid_from": now - timedelta(days=30), "valid_until": now + timedelta(days=365)}
    created = 0
    for row in reference_read()["voucher_programs"]:
        if row["city"] not in CITY_PROGRAMS or VoucherProgram.objects.filter(name=_city_name(row)).exists():
            continue
        region_codes, provinces, min_spend, budget = CITY_PROGRAMS[row["city"]]
        program = services.voucher_program_create(
            name=_city_name(row),
            sponsor=f"{row['city']} government",
            percent=Decimal(row["subsidy_pct"]),
            cap_per_buyer=_money(row["cap_per_company_cny"]),
            budget=_money(row["total_budget_cny"]) or budget,
            eligible_regions=[regions[code] for code in region_codes],
            eligible_buyer_provinces=provinces,
            min_spend=min_spend,
            **window,
        )
        services.vouchers_issue(program_id=program.pk, sponsor_provider=None, count=CLAIMABLE_CODES_PER_PROGRAM)
        created += 1
    return created + _zhengzhou_promotion_seed(regions, window)


def _zhengzhou_promotion_seed(regions: dict, window: dict) -> int:
    name = "First 50 GPU-hours free in Zhengzhou"
    if VoucherProgram.objects.filter(name=name).exists():
        return 0
    provider = Organisation.objects.get(name="Central Plains Supercompute")
    program = services.voucher_program_create(
        name=name,
        sponsor=provider.name,
        sponsor_provider=provider,
        kind=VoucherProgram.Kind.FREE_GPU_HOURS,
        free_gpu_hours=Decimal(50),
        budget=Decimal(50000),
        eligible_regions=[regions["zhengzhou"]],
        **window,
    )
    services.vouchers_issue(program_id=program.pk, sponsor_provider=provider, count=CLAIMABLE_CODES_PER_PROGRAM)
    return 1


def _city_name(row: dict) -> str:
    return f"{row['city']} compute voucher"


def _money(value) -> Decimal | None:
    return None if value is None else Decimal(str(value))
