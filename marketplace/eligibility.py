"""Whether a voucher can be used, and for which request: read-only checks shared by claims,
request submission and quotes. Each failure is an ``InvalidInput`` on the caller's field that says
which rule failed."""

from __future__ import annotations

from datetime import datetime

from django.utils.translation import gettext

from marketplace.errors import InvalidInput
from marketplace.models import BuyerRequest, Organisation, Voucher, VoucherProgram


def voucher_usable(*, code: str, buyer: Organisation, now: datetime, field: str, lock: bool = False) -> Voucher:
    """The voucher with ``code`` if ``buyer`` may use it now (``lock``: under its row lock)."""
    vouchers = Voucher.objects.select_related("program")
    if lock:
        vouchers = vouchers.select_for_update(of=("self",), no_key=True)
    voucher = vouchers.filter(code=code).first()
    if voucher is None:
        raise InvalidInput(gettext("Unknown voucher code."), field=field)
    if voucher.buyer_id is not None and voucher.buyer_id != buyer.pk:
        raise InvalidInput(gettext("This voucher belongs to another buyer."), field=field)
    program = voucher.program
    if voucher.status == Voucher.Status.REVOKED:
        raise InvalidInput(gettext("This voucher was revoked."), field=field)
    if now < program.valid_from:
        raise InvalidInput(
            gettext("This voucher is not valid before %(date)s.") % {"date": f"{program.valid_from:%Y-%m-%d}"},
            field=field,
        )
    if now >= program.valid_until:
        raise InvalidInput(
            gettext("This voucher expired on %(date)s.") % {"date": f"{program.valid_until:%Y-%m-%d}"}, field=field
        )
    if program.remaining_budget <= 0 or (voucher.cap is not None and voucher.spent >= voucher.cap):
        raise InvalidInput(gettext("This voucher has no value left."), field=field)
    provinces = program.eligible_buyer_provinces
    if provinces and buyer.province not in provinces:
        raise InvalidInput(
            gettext("This programme is for buyers registered in %(provinces)s.") % {"provinces": ", ".join(provinces)},
            field=field,
        )
    return voucher


def voucher_pays(voucher: Voucher, program: VoucherProgram, now: datetime) -> bool:
    """Whether ``voucher`` of ``program`` can pay a subsidy at ``now``: claimed, not revoked, inside
    the programme's window, the programme not paused by its sponsor. The engine plans subsidy only
    from such vouchers, and a round reserves it only from them (``SubsidyBook``)."""
    valid = program.valid_from <= now < program.valid_until and not program.paused
    return valid and voucher.status == Voucher.Status.ACTIVE and voucher.buyer_id is not None


def voucher_covers(voucher: Voucher, request: BuyerRequest, *, field: str = "voucher_code") -> None:
    """Raise unless the voucher's programme covers ``request``'s GPU model and size."""
    program = voucher.program
    models = {model.pk: model.code for model in program.eligible_gpu_models.all()}
    if models and request.gpu_model_id not in models:
        raise InvalidInput(
            gettext("This programme covers only %(models)s.") % {"models": ", ".join(sorted(models.values()))},
            field=field,
        )
    if program.min_spend is not None and request.gross_at_cap < program.min_spend:
        raise InvalidInput(
            gettext("This programme needs a request worth at least %(amount)s CNY.")
            % {"amount": f"{program.min_spend:.2f}"},
            field=field,
        )
