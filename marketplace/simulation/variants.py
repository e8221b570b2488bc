"""What a simulated run varies: the placement policy of its rounds, and the market features on.

A :class:`Variant` is a placement policy (``matching.policies``: the plan builder of every round)
plus a set of :class:`Feature` names. The three policies run bare, as they always have; "engine with
market features" (:data:`MARKET`) is the engine with every feature this branch has. A feature is
data, read by the runner at three points, so that one more is one entry in :data:`FEATURES` (and
its name in :data:`MARKET`):

- ``follow_guidance``: once a simulated day the providers reprice their idle listings toward the
  guidance's suggested price (``marketplace.simulation.providers``);
- ``settings``: Django settings overridden for the whole run (the rounds read them), e.g. an engine
  switch;
- ``request_terms``: extra ``request_submit`` terms for the requests of a workload
  (``scenario.WORKLOADS`` names), e.g. ``{"batch": {"interruptible": True}}``;
- ``interruptible_floor_share``: every listing also offers its idle GPUs as interruptible, at that
  share of its price (``marketplace.simulation.providers.interruptible_floor``), the floor
  following the price when the provider reprices.

Features never change the script: every variant replays the same supply and demand.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from types import MappingProxyType
from typing import Any

from matching.policies import CHEAPEST, ENGINE, NEAREST, POLICIES

_EMPTY: Mapping = MappingProxyType({})


@dataclass(frozen=True)
class Feature:
    """One market feature a variant may switch on (see the module's docstring for each field)."""

    name: str
    summary: str
    follow_guidance: bool = False
    settings: Mapping[str, Any] = field(default_factory=lambda: _EMPTY)
    request_terms: Mapping[str, Mapping[str, Any]] = field(default_factory=lambda: _EMPTY)
    interruptible_floor_share: Decimal | None = None


GUIDED_PRICES = "guided-prices"
LOOK_AHEAD = "look-ahead"
INTERRUPTIBLE_BATCH = "interruptible-batch"
#: The share of its price at which a simulated listing offers interruptible GPUs: Vast's and
#: RunPod's interruptible prices run about half their on-demand ones, Fireworks' spot 30 % off.
INTERRUPTIBLE_FLOOR_SHARE = Decimal("0.6")
#: Every feature a variant may name.
FEATURES: Mapping[str, Feature] = MappingProxyType(
    {
        f.name: f
        for f in (
            Feature(
                GUIDED_PRICES,
                "providers reprice each idle listing halfway toward its suggested price once a simulated day",
                follow_guidance=True,
            ),
            Feature(
                LOOK_AHEAD,
                "rounds look ahead: near capacity priced at its recent rent, far-off requests held for the period "
                "(real-time ones never)",
                settings={"MATCHING_LOOKAHEAD": True},
            ),
            Feature(
                INTERRUPTIBLE_BATCH,
                "listings offer idle GPUs as interruptible at 60 % of their price; batch requests bid for them",
                request_terms={"batch": {"interruptible": True}},
                interruptible_floor_share=INTERRUPTIBLE_FLOOR_SHARE,
            ),
        )
    }
)


@dataclass(frozen=True)
class Variant:
    """A placement policy and the features switched on; ``name`` is what ``--policy`` takes."""

    name: str
    label: str
    policy: str
    features: tuple[str, ...] = ()
    #: Inference requests name only the buyer's first-choice GPU model (an allow-list of one,
    #: ``inference_demand.SubmitInference.first_choice``) instead of allowing every GPU model.
    first_choice_only: bool = False

    def __post_init__(self):
        if self.policy not in POLICIES:
            raise ValueError(f"unknown policy {self.policy!r}")
        unknown = [name for name in self.features if name not in FEATURES]
        if unknown:
            raise ValueError(f"unknown feature {unknown[0]!r}; known: {', '.join(FEATURES)}")

    @property
    def switched_on(self) -> tuple[Feature, ...]:
        return tuple(FEATURES[name] for name in self.features)

    @property
    def follows_guidance(self) -> bool:
        return any(f.follow_guidance for f in self.switched_on)

    @property
    def settings(self) -> dict[str, Any]:
        """The Django settings the run overrides (later features win on a clash)."""
        return {key: value for f in self.switched_on for key, value in f.settings.items()}

    @property
    def interruptible_floor_share(self) -> Decimal | None:
        """The share of its price at which each listing offers interruptible GPUs; ``None``: not offered."""
        shares = [f.interruptible_floor_share for f in self.switched_on if f.interruptible_floor_share is not None]
        return shares[-1] if shares else None

    def request_terms(self, workload: str) -> dict[str, Any]:
        """Extra ``request_submit`` terms for a request of ``workload``."""
        return {key: value for f in self.switched_on for key, value in f.request_terms.get(workload, {}).items()}


MARKET = "market"
FIRST_CHOICE = "engine-first-choice"
#: Every variant, in the order reports list them: the three policies bare, then the engine with
#: the market features, then the engine held to each inference buyer's first-choice GPU model
#: (issue 15's middle column: the engine without substitution across GPU models). Nearest-region-
#: first is what a buyer does by hand, so its inference buyers name their first choice too. On
#: GPU-form demand ``first_choice_only`` changes nothing.
VARIANTS: Mapping[str, Variant] = MappingProxyType(
    {
        v.name: v
        for v in (
            Variant(ENGINE, "our engine", ENGINE),
            Variant(NEAREST, "nearest region first", NEAREST, first_choice_only=True),
            Variant(CHEAPEST, "cheapest first", CHEAPEST),
            Variant(MARKET, "engine with market features", ENGINE, (GUIDED_PRICES, LOOK_AHEAD, INTERRUPTIBLE_BATCH)),
            Variant(FIRST_CHOICE, "engine, first-choice GPU model only", ENGINE, first_choice_only=True),
        )
    }
)


def variant_of(name: str) -> Variant:
    """The variant called ``name``; ``ValueError`` for any other name."""
    if name not in VARIANTS:
        raise ValueError(f"unknown policy {name!r}; choose one of {', '.join(VARIANTS)}")
    return VARIANTS[name]
