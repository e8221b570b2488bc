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
from decimal import ROUND_HALF_UP, Decimal

from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils import timezone

from marketplace import services
from marketplace.models import GpuModel, Membership, Organisation, Region

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

CENT = Decimal("0.01")


@dataclass(frozen=True)
class DemoSummary:
    providers: int
    listings: int
    gpus: int
    buyers: int
    requests: int


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
        buyer, _ = Organisation.objects.get_or_create(name=name, defaults={"kind": "buyer"})
        if buyer.requests.exists():
            continue
        for latency_class in classes:
            _demo_request(rng, buyer, regions[origin_code], models, latency_class)
            requests += 1
    return DemoSummary(len(PROVIDERS), listings, gpus, len(BUYERS), requests)


def _demo_listing(rng: random.Random, provider, region: Region, model: GpuModel, max_nodes: int):
    # West sells below the indicative price (cheap power, idle halls); the east above it.
    markup = rng.uniform(0.72, 0.9) if region.is_west else rng.uniform(1.02, 1.3)
    node_size = 8 if model.code != "rtx4090" else rng.choice([4, 8])
    nodes = rng.randint(max(1, max_nodes // 3), max_nodes)
    now = timezone.now()
    return services.listing_create(
        provider=provider,
        region=region,
        gpu_model=model,
        gpu_count=nodes * node_size,
        gpus_per_node=node_size,
        price_per_gpu_hour=(model.indicative_price_per_gpu_hour * Decimal(markup)).quantize(CENT, ROUND_HALF_UP),
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
        max_price_per_gpu_hour=(model.indicative_price_per_gpu_hour * cap_markup).quantize(CENT),
        duration_hours=rng.choice([4, 12, 24, 72, 168]),
        start_by=timezone.now() + timedelta(hours=rng.randint(2, 48)),
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
    return [username for username, _, _ in logins]
