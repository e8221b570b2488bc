"""Names others see show what they are (issue 14, finding 7): ``marketplace.names`` through the API,
the sign-up page and the admin, and a promotion's sponsor is its provider.

Every refusal is a 400 (or the form again) naming the field, and writes nothing.
"""

from __future__ import annotations

import json
from datetime import timedelta
from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from rest_framework.test import APIClient

from marketplace import names, services
from marketplace.errors import InvalidInput
from marketplace.models import Organisation, VoucherProgram
from tests.marketplace.test_admin import program_form

User = get_user_model()

CYRILLIC_A = "demo-\u0430dmin"  # demo-аdmin
FULLWIDTH = "\uff44\uff45\uff4d\uff4f-admin"  # ｄｅｍｏ-admin
RLO = "\u202e"
ZWSP = "\u200b"

#: What an outside probe registered, each with why it was a spoof.
SPOOFS = {
    "cyrillic a": CYRILLIC_A,
    "fullwidth": FULLWIDTH,
    "digit zero for o": "dem0-admin",
    "right-to-left override": f"demo-admin{RLO}nimda",
    "zero-width space": f"demo{ZWSP}-admin",
    "newline": "demo-admin\nstaff",
    "markup": "<script>alert(1)</script>",
}
#: Names that must keep working.
GOOD_NAMES = [
    "宁夏中卫云计算",
    "上海市经济和信息化委员会",
    "Li Inference (Beijing) Co., Ltd.",
    "A&B Compute - Ningxia",
    "宁夏西云数据（NWCD）",
    "H20 集群 2号",
]


@pytest.fixture
def demo_admin(db):
    """The name a spoof would pass for: staff, and a provider organisation of the same name."""
    Organisation.objects.create(name="demo-admin", kind="provider")
    return User.objects.create_user(username="demo-admin", password="pw-for-tests-1", is_staff=True)


def counts() -> tuple[int, int, int]:
    return User.objects.count(), Organisation.objects.count(), VoucherProgram.objects.count()


def register(**changes):
    body = {
        "username": "li-wei",
        "password": "a-long-pass-phrase",
        "email": "li@example.com",
        "role": "buyer",
        "organisation": "Li Inference",
    } | changes
    return APIClient().post("/api/v1/auth/register/", json.dumps(body), content_type="application/json")


# --- the rules ----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", GOOD_NAMES)
def test_chinese_and_plain_latin_names_pass(name):
    assert names.name_check(name, field="name") == name
    names.lookalike_check(name, existing=["Zhongwei Desert Compute", "demo-admin"], field="name")


@pytest.mark.parametrize(
    ("char", "said"),
    [
        ("\u202e", "RIGHT-TO-LEFT OVERRIDE"),
        ("\u2066", "LEFT-TO-RIGHT ISOLATE"),
        ("\u200f", "RIGHT-TO-LEFT MARK"),
        ("\u200b", "ZERO WIDTH SPACE"),
        ("\u200d", "ZERO WIDTH JOINER"),
        ("\ufeff", "ZERO WIDTH NO-BREAK SPACE"),
        ("\n", "U+000A"),
        ("\t", "U+0009"),
        ("\x00", "U+0000"),
        ("\u2028", "LINE SEPARATOR"),
        ("\u3164", "HANGUL FILLER"),
        ("\ue000", "U+E000"),
        ("<", "LESS-THAN SIGN"),
        (">", "GREATER-THAN SIGN"),
    ],
)
def test_invisible_control_and_markup_characters_are_refused_by_name(char, said):
    with pytest.raises(InvalidInput) as refused:
        names.name_check(f"Zhongwei{char}Compute", field="organisation")
    assert refused.value.field == "organisation"
    assert said in refused.value.message


def test_a_name_is_stored_without_surrounding_spaces_and_in_nfc():
    assert names.name_check("  Cafe\u0301 Compute ", field="name") == "Café Compute"


def test_usernames_are_nfkc_normalised():
    assert names.username_normalise(FULLWIDTH) == "demo-admin"
    assert names.username_normalise("ﬁnance") == "finance"


@pytest.mark.parametrize(
    ("name", "existing"),
    [
        ("dem0-admin", "demo-admin"),
        (FULLWIDTH, "demo-admin"),
        ("DEMO-ADMIN", "demo-admin"),
        ("demo-Iogin", "demo-login"),
        ("Zhongwei  Desert Cornpute", "Zhongwei Desert Compute"),  # two spaces, rn for m
        ("оре", "ope"),  # Cyrillic throughout: not mixed, but its skeleton is Latin's
    ],
)
def test_a_name_that_looks_like_one_in_use_is_refused_naming_it(name, existing):
    with pytest.raises(InvalidInput, match=f'Looks like "{existing}"') as refused:
        names.lookalike_check(name, existing=["someone-else", existing], field="username")
    assert refused.value.field == "username"


def test_latin_mixed_with_a_latin_look_alike_is_refused_even_when_nothing_is_taken():
    with pytest.raises(InvalidInput, match="CYRILLIC SMALL LETTER A"):
        names.lookalike_check(CYRILLIC_A, existing=[], field="username")


def test_names_that_differ_are_not_look_alikes():
    names.lookalike_check("demo-buyer", existing=["demo-provider", "demo-admin", "li-wei"], field="username")


# --- sign-up: API and page ----------------------------------------------------------------------


@pytest.mark.parametrize("spoof", SPOOFS.values(), ids=SPOOFS.keys())
@pytest.mark.parametrize("field", ["username", "organisation"])
def test_a_spoofed_username_or_organisation_is_a_400_naming_it(demo_admin, field, spoof):
    before = counts()
    response = register(**{field: spoof})
    assert response.status_code == 400, response.data
    assert set(response.data) == {field}
    assert counts() == before


@pytest.mark.parametrize("organisation", GOOD_NAMES)
def test_chinese_and_latin_organisations_sign_up(db, organisation):
    response = register(organisation=organisation)
    assert response.status_code == 201, response.data
    assert response.data["organisation"] == organisation


def test_a_fullwidth_username_is_stored_as_its_nfkc_form(db):
    response = register(username="\uff4c\uff49-wei")  # ｌｉ-wei
    assert response.status_code == 201, response.data
    assert response.data["username"] == "li-wei"
    assert User.objects.filter(username="li-wei").exists()


@pytest.mark.parametrize(
    ("field", "spoof"),
    [("username", CYRILLIC_A), ("username", FULLWIDTH), ("organisation", f"Li{RLO}Inference")],
)
def test_the_sign_up_page_shows_the_refusal_beside_the_field(demo_admin, field, spoof):
    before = counts()
    body = {"role": "buyer", "organisation": "Li Inference", "username": "li-wei", "email": "li@example.com"}
    response = Client().post("/signup/", {**body, "password": "a-long-pass-phrase", field: spoof})
    assert response.status_code == 400
    assert response.context["form"].errors[field]
    assert counts() == before


# --- the admin ----------------------------------------------------------------------------------


@pytest.fixture
def admin_browser(demo_admin):
    client = Client()
    client.force_login(demo_admin.__class__.objects.create_superuser("root", "root@example.com", "pw-for-tests-1"))
    return client


def test_the_admin_refuses_a_spoofed_organisation_beside_the_field(admin_browser):
    before = counts()
    members = {"members-TOTAL_FORMS": "0", "members-INITIAL_FORMS": "0"}  # the membership inline
    for spoof in (CYRILLIC_A, f"Li{ZWSP}Inference", "<b>Li</b>"):
        body = {"name": spoof, "kind": "buyer", **members}
        response = admin_browser.post("/admin/marketplace/organisation/add/", body)
        assert response.status_code == 200
        assert response.context["adminform"].form.errors["name"]
    assert counts() == before
    body = {"name": "宁夏中卫云计算", "kind": "provider", **members}
    assert admin_browser.post("/admin/marketplace/organisation/add/", body).status_code == 302


def test_the_admin_refuses_a_look_alike_username(admin_browser):
    before = counts()
    body = {"password1": "a-long-pass-phrase", "password2": "a-long-pass-phrase", "usable_password": "true"}
    for spoof in (CYRILLIC_A, "dem0-admin"):
        response = admin_browser.post("/admin/auth/user/add/", {**body, "username": spoof})
        assert response.status_code == 200
        assert response.context["adminform"].form.errors["username"]
    assert counts() == before


def test_the_admin_refuses_a_programme_sponsor_with_a_bidi_override(admin_browser, reference):
    before = counts()
    response = admin_browser.post("/admin/marketplace/voucherprogram/add/", program_form(sponsor=f"Chengdu{RLO}"))
    assert response.status_code == 200
    assert response.context["adminform"].form.errors["sponsor"]
    assert counts() == before


# --- programmes: names and the sponsor ----------------------------------------------------------


def program_body(**changes) -> dict:
    body = {"name": "First 50 GPU-hours free", "percent": "20", "budget": "1000", "valid_until": "2030-01-01T00:00:00Z"}
    return body | changes


def test_a_promotion_naming_another_sponsor_is_a_400_naming_sponsor(clients):
    before = counts()
    body = program_body(sponsor="Shanghai Municipal Government")
    response = clients["provider"].post("/api/v1/voucher-programs/", body, format="json")
    assert response.status_code == 400
    assert "sponsored by its provider" in response.data["sponsor"][0]
    assert counts() == before


@pytest.mark.parametrize("given", [{}, {"sponsor": "Zhongwei Desert Compute"}])
def test_a_promotion_is_sponsored_by_its_provider(clients, provider, given):
    response = clients["provider"].post("/api/v1/voucher-programs/", program_body(**given), format="json")
    assert response.status_code == 201, response.data
    assert (response.data["sponsor"], response.data["sponsor_provider"]) == (provider.name, provider.name)


def test_staff_name_any_sponsor(clients):
    body = program_body(sponsor="上海市经济和信息化委员会")
    response = clients["staff"].post("/api/v1/voucher-programs/", body, format="json")
    assert response.status_code == 201, response.data
    assert response.data["sponsor"] == "上海市经济和信息化委员会"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("name", "<script>alert(1)</script>"),
        ("name", f"Shanghai{ZWSP} compute voucher"),
        ("name", "Shanghai cоmpute voucher"),  # a Cyrillic о: looks like the staff programme below
        ("sponsor", f"Shanghai{RLO}"),
        ("sponsor", "Shanghai\ngovernment"),
        ("eligible_buyer_provinces", ["Shanghai\u2066"]),
    ],
)
def test_a_programme_with_a_spoofed_name_is_a_400_naming_the_field(clients, field, value, now):
    services.voucher_program_create(
        name="Shanghai compute voucher",
        sponsor="Shanghai",
        percent=Decimal(30),
        budget=Decimal(1000),
        valid_from=now,
        valid_until=now + timedelta(days=30),
    )
    before = counts()
    body = program_body(**{"sponsor": "Shanghai government", field: value})
    response = clients["staff"].post("/api/v1/voucher-programs/", body, format="json")
    assert response.status_code == 400
    assert set(response.data) == {field}
    assert counts() == before


def test_renaming_a_programme_follows_the_same_rules(clients, provider, now):
    promotion = services.voucher_program_create(
        name="Zhongwei first hours",
        sponsor_provider=provider,
        percent=Decimal(30),
        budget=Decimal(1000),
        valid_from=now,
        valid_until=now + timedelta(days=30),
    )
    url = f"/api/v1/voucher-programs/{promotion.pk}/"
    response = clients["provider"].patch(url, {"name": f"Zhongwei{RLO} first hours"}, format="json")
    assert (response.status_code, set(response.data)) == (400, {"name"})
    response = clients["provider"].patch(url, {"name": "Zhongwei first hours"}, format="json")
    assert response.status_code == 200, response.data  # its own name does not look like another's
