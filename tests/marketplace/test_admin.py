"""The Django admin: every model registered, voucher programmes managed through the services."""

from decimal import Decimal

import pytest
from django.apps import apps
from django.contrib import admin
from django.contrib.auth import get_user_model
from django.test import Client

from marketplace.models import VoucherProgram


@pytest.fixture
def staff_client(db):
    user = get_user_model().objects.create_superuser(username="root", password="pw-for-tests-1", email="r@x.cn")
    client = Client()
    client.force_login(user)
    return client


def test_every_model_is_in_the_admin():
    registered = set(admin.site._registry)
    assert set(apps.get_app_config("marketplace").get_models()) <= registered


@pytest.mark.parametrize(
    "name", [m._meta.model_name for m in admin.site._registry if m._meta.app_label == "marketplace"]
)
def test_every_admin_list_renders(staff_client, reference, name):
    assert staff_client.get(f"/admin/marketplace/{name}/").status_code == 200


def program_form(**overrides):
    data = {
        "name": "Chengdu compute voucher",
        "sponsor": "Chengdu government",
        "kind": "percent",
        "percent": "60",
        "budget": "1000000",
        "valid_from_0": "2026-01-01",
        "valid_from_1": "00:00:00",
        "valid_until_0": "2030-01-01",
        "valid_until_1": "00:00:00",
        "eligible_buyer_provinces": "[]",
    }
    return {**data, **overrides}


def test_staff_create_a_programme_in_the_admin_through_the_service(staff_client, reference):
    response = staff_client.post("/admin/marketplace/voucherprogram/add/", program_form())
    assert response.status_code == 302, response.content[:2000]
    program = VoucherProgram.objects.get()
    assert program.remaining_budget == program.budget == Decimal("1000000")


def test_bad_terms_show_beside_the_field(staff_client, reference):
    response = staff_client.post("/admin/marketplace/voucherprogram/add/", program_form(percent=""))
    assert response.status_code == 200
    assert "A percent programme needs a percent" in response.content.decode()
    assert not VoucherProgram.objects.exists()


def test_budget_top_up_in_the_admin_moves_the_balance(staff_client, reference):
    staff_client.post("/admin/marketplace/voucherprogram/add/", program_form())
    program = VoucherProgram.objects.get()
    response = staff_client.post(
        f"/admin/marketplace/voucherprogram/{program.pk}/change/",
        {
            "name": program.name,
            "budget": "1500000",
            "valid_from_0": "2026-01-01",
            "valid_from_1": "00:00:00",
            "valid_until_0": "2030-01-01",
            "valid_until_1": "00:00:00",
            "cap_per_buyer": "",
        },
    )
    assert response.status_code == 302, response.content[:3000]
    program.refresh_from_db()
    assert program.remaining_budget == Decimal("1500000")
    action = staff_client.post(
        "/admin/marketplace/voucherprogram/", {"action": "issue_ten_codes", "_selected_action": [program.pk]}
    )
    assert action.status_code == 302
    assert program.vouchers.count() == 10
