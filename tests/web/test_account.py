"""The account pages (issue 18, problems 13 and 17): sign-up with every refusal at once and the
password rules before the first submit, the sign-in lock-out in both languages, the password reset
through an e-mailed link, names that refuse markup and control characters in the forms and the API,
and the organisation page in China Standard Time and yuan."""

from __future__ import annotations

import json
import re
from datetime import timedelta
from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.utils import timezone
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from marketplace import services
from marketplace.models import ApiKey, Membership, Organisation
from tests.conftest import member

User = get_user_model()
ZH = {"HTTP_ACCEPT_LANGUAGE": "zh-CN"}
EN = {"HTTP_ACCEPT_LANGUAGE": "en"}
GOOD = {
    "role": "buyer",
    "organisation": "Li Inference",
    "username": "li-wei",
    "email": "li@example.com",
    "password": "a-long-pass-phrase",
}


def counts() -> tuple[int, int, int, int]:
    return User.objects.count(), Organisation.objects.count(), Membership.objects.count(), ApiKey.objects.count()


@pytest.fixture
def owner(buyer):
    user = member("owner-li", buyer, email="owner@example.com")
    user.membership.role = Membership.Role.OWNER
    user.membership.save()
    return user


def signed_in(user, **headers) -> Client:
    client = Client(**headers)
    client.force_login(user)
    return client


# --- sign-up: the rules before the first submit, every refusal at once -------------------------


@pytest.mark.parametrize(
    ("headers", "rule", "lang"),
    [
        (EN, "Your password must contain at least 8 characters.", 'lang="en"'),
        (ZH, "你的密码必须包含至少 8 个字符", 'lang="zh-Hans"'),
    ],
)
def test_the_sign_up_page_states_the_password_rules_before_anything_is_typed(db, headers, rule, lang):
    response = Client(**headers).get("/signup/")
    assert response.status_code == 200
    html = response.content.decode()
    assert lang in html
    rules = re.search(r'<ul class="help rules" id="id_password_helptext">(.*?)</ul>', html, re.S)
    assert rules, "the password rules are listed under the password field"
    assert rule in rules.group(1)
    assert rules.group(1).count("<li>") == 4  # one per AUTH_PASSWORD_VALIDATORS entry
    assert 'aria-describedby="id_password_helptext"' in html
    assert 'class="error"' in html
    assert "This field is required" not in html
    assert "这个字段是必填项" not in html


def test_sign_up_shows_every_refusal_in_one_submit(buyer):
    """The organisation taken, a look-alike username, a bad address and a weak password: all four
    beside their fields after one submit, not one round at a time; nothing is written."""
    before = counts()
    body = {**GOOD, "organisation": "huangpu chat ai", "email": "not-an-address", "password": "12345678"}
    response = Client(**EN).post("/signup/", body)
    assert response.status_code == 400
    errors = response.context["form"].errors
    assert set(errors) == {"organisation", "email", "password"}, errors
    assert "is already registered" in errors["organisation"][0]
    assert "too common" in errors["password"][0]
    assert "entirely numeric" in errors["password"][0]
    html = response.content.decode()
    assert "Correct the 3 fields marked below." in html
    assert counts() == before


def test_sign_up_refusals_of_the_services_and_the_shapes_come_together(db):
    """A field's shape error (a username with a space) and a service rule's (markup in the
    organisation, a password too like the username) on one submit."""
    before = counts()
    body = {**GOOD, "organisation": "<script>alert(1)</script>", "username": "li wei", "password": "li-wei-li-wei"}
    response = Client(**EN).post("/signup/", body)
    errors = response.context["form"].errors
    assert set(errors) == {"organisation", "username"}, errors
    assert "LESS-THAN SIGN" in errors["organisation"][0]
    assert "markup" in errors["organisation"][0]
    body = {**GOOD, "organisation": "Zhongwei\u200bCompute", "password": "li-wei@example"}
    errors = Client(**EN).post("/signup/", body).context["form"].errors
    assert set(errors) == {"organisation", "password"}, errors
    assert "too similar" in errors["password"][0]
    assert counts() == before


def test_sign_up_refusals_are_in_chinese_for_a_chinese_reader(buyer):
    body = {**GOOD, "organisation": "Huangpu Chat AI", "password": "123"}
    response = Client(**ZH).post("/signup/", body)
    errors = response.context["form"].errors
    assert "已被注册" in errors["organisation"][0]
    assert "密码" in errors["password"][0]
    assert "请修改下方标出的 2 个字段。" in response.content.decode()


def test_a_good_sign_up_still_signs_in(db):
    response = Client(**EN).post("/signup/", GOOD)
    assert response.status_code == 302
    assert User.objects.get(username="li-wei").membership.organisation.name == "Li Inference"


def test_the_radio_buttons_sit_inside_their_labels(db):
    html = Client(**EN).get("/signup/").content.decode()
    for value in ("provider", "buyer"):
        radio = rf'<label class="radio" for="id_role_\d"><input type="radio" name="role" value="{value}"'
        assert re.search(radio, html)


# --- sign-in: the forgot-password link and the lock-out, in both languages ---------------------


def test_sign_in_offers_a_password_reset(db):
    html = Client(**ZH).get("/signin/").content.decode()
    assert 'href="/password/reset/"' in html
    assert "忘记密码？" in html


@pytest.mark.parametrize(
    ("headers", "said"),
    [(EN, "Too many failed sign-ins"), (ZH, "登录失败次数过多")],
)
def test_the_lock_out_is_said_in_the_readers_language(owner, settings, headers, said):
    settings.AXES_FAILURE_LIMIT = 2
    client = Client(**headers)
    for _ in range(2):
        client.post("/signin/", {"username": "owner-li", "password": "wrong"})
    response = client.post("/signin/", {"username": "owner-li", "password": "pw-for-tests-1"})
    assert response.status_code == 429
    assert said in response.content.decode()


# --- the password reset --------------------------------------------------------------------------


def reset_link(message) -> str:
    return re.search(r"https?://[^/\s]+(/password/reset/[^\s]+/)", message.body).group(1)


def test_the_e_mailed_link_sets_a_new_password_that_signs_in(owner, mailoutbox):
    Token.objects.create(user=owner)
    client = Client(**EN)
    response = client.post("/password/reset/", {"email": "owner@example.com"})
    assert response.status_code == 302
    assert response["Location"] == "/password/reset/sent/"
    assert len(mailoutbox) == 1
    mail = mailoutbox[0]
    assert mail.to == ["owner@example.com"]
    assert mail.subject == "Reset your GPU marketplace password"
    assert '"owner-li"' in mail.body
    assert "within 3 days" in mail.body
    link = reset_link(mail)

    form_page = client.get(link, follow=True)
    assert form_page.status_code == 200
    assert form_page.context["validlink"]
    set_url = form_page.redirect_chain[-1][0]
    html = form_page.content.decode()
    assert "Your password must contain at least 8 characters." in html  # the rules, before a submit
    weak = client.post(set_url, {"new_password1": "123", "new_password2": "123"})
    assert weak.status_code == 200
    assert weak.context["form"].errors["new_password2"]
    done = client.post(set_url, {"new_password1": "a-fresh-pass-phrase", "new_password2": "a-fresh-pass-phrase"})
    assert done.status_code == 302
    assert done["Location"] == "/password/reset/done/"
    assert "Sign in with it" in client.get("/password/reset/done/").content.decode()
    assert not Token.objects.filter(user=owner).exists()  # the reset ends the API credentials

    fresh = Client()
    assert fresh.post("/signin/", {"username": "owner-li", "password": "pw-for-tests-1"}).status_code == 200
    assert fresh.post("/signin/", {"username": "owner-li", "password": "a-fresh-pass-phrase"}).status_code == 302
    again = Client().get(link, follow=True)
    assert not again.context["validlink"]
    assert "This link has been used already or has expired." in again.content.decode()


def test_the_reset_e_mail_is_in_chinese_for_a_chinese_reader(owner, mailoutbox):
    Client(**ZH).post("/password/reset/", {"email": "owner@example.com"})
    (mail,) = mailoutbox
    assert mail.subject == "重置您的 GPU 算力市场密码"
    assert "有人申请重置" in mail.body
    assert "3 天内有效" in mail.body
    assert reset_link(mail)


def test_an_unknown_address_is_answered_as_a_known_one_and_nothing_is_sent(owner, mailoutbox):
    known = Client(**EN).post("/password/reset/", {"email": "owner@example.com"})
    unknown = Client(**EN).post("/password/reset/", {"email": "nobody@example.com"})
    assert (unknown.status_code, unknown["Location"]) == (known.status_code, known["Location"])
    assert len(mailoutbox) == 1
    page = Client(**EN).get("/password/reset/sent/").content.decode()
    assert "If an account has that address" in page


def test_reset_e_mails_asked_from_one_address_are_rate_limited(owner, mailoutbox, monkeypatch):
    """The page that sends e-mail cannot flood an inbox: past the rate, the page again with a
    message, 429 and Retry-After, and no e-mail; another address is not held back."""
    from rest_framework.throttling import SimpleRateThrottle

    rates = {**SimpleRateThrottle.THROTTLE_RATES, "password_reset": "2/hour"}
    monkeypatch.setattr(SimpleRateThrottle, "THROTTLE_RATES", rates)
    body = {"email": "owner@example.com"}
    for _ in range(2):
        assert Client(**EN).post("/password/reset/", body, REMOTE_ADDR="203.0.113.9").status_code == 302
    refused = Client(**ZH).post("/password/reset/", body, REMOTE_ADDR="203.0.113.9")
    assert refused.status_code == 429
    assert 0 < int(refused["Retry-After"]) <= 3600
    assert "来自该地址的密码重置请求过多" in refused.content.decode()
    assert len(mailoutbox) == 2
    assert Client().post("/password/reset/", body, REMOTE_ADDR="203.0.113.10").status_code == 302
    assert len(mailoutbox) == 3


@pytest.mark.parametrize(("headers", "said"), [(EN, "Reset your password"), (ZH, "重置密码")])
def test_the_password_pages_are_translated(owner, headers, said):
    assert said in Client(**headers).get("/password/reset/").content.decode()
    change = signed_in(owner, **headers).get("/password/").content.decode()
    assert ("Change password" if headers is EN else "修改密码") in change
    assert ("at least 8 characters" if headers is EN else "至少 8 个字符") in change


# --- names refuse markup and control characters (problem 17) -------------------------------------

BAD_NAMES = ["<script>alert(1)</script>", "Li <b>Inference</b>", "Li\x07Inference", "Li\u202eInference", "Li\u200bInf"]


@pytest.mark.parametrize("name", BAD_NAMES)
def test_the_api_refuses_such_an_organisation_name_naming_the_field(db, name):
    before = counts()
    body = {**GOOD, "organisation": name}
    response = APIClient().post("/api/v1/auth/register/", json.dumps(body), content_type="application/json")
    assert response.status_code == 400
    assert list(response.json()) == ["organisation"]
    assert counts() == before


@pytest.mark.parametrize("name", BAD_NAMES)
def test_an_api_key_name_with_markup_or_a_control_character_is_refused(owner, name):
    before = counts()
    body = {"name": name, "scopes": ["read"]}
    client = APIClient()
    client.force_authenticate(owner)
    response = client.post("/api/v1/api-keys/", json.dumps(body), content_type="application/json")
    assert response.status_code == 400, response.content
    assert list(response.json()) == ["name"]
    page = signed_in(owner).post("/organisation/keys/", {"name": name, "scopes": ["read"]})
    assert page.status_code == 400
    assert page.context["key_form"].errors["name"]
    assert counts() == before


def test_an_api_key_name_refusal_is_in_the_readers_language(owner):
    client = APIClient(**ZH)
    client.force_authenticate(owner)
    body = {"name": "<x>", "scopes": ["read"]}
    response = client.post("/api/v1/api-keys/", json.dumps(body), content_type="application/json")
    assert "标记符号" in response.json()["name"][0]


@pytest.mark.parametrize("username", ["<b>li</b>", "li\x07wei", "li\u200bwei"])
def test_a_member_username_with_markup_or_a_control_character_is_refused(owner, username):
    before = counts()
    body = {"username": username, "email": "m@example.com", "password": "a-long-pass-phrase", "role": "member"}
    client = APIClient()
    client.force_authenticate(owner)
    response = client.post("/api/v1/members/", json.dumps(body), content_type="application/json")
    assert response.status_code == 400
    assert "username" in response.json()
    page = signed_in(owner).post("/organisation/members/", body)
    assert page.status_code == 400
    assert page.context["member_form"].errors["username"]
    assert counts() == before


def test_a_member_form_shows_every_refusal_at_once(owner):
    body = {"username": "owner-li", "email": "nope", "password": "123", "role": "member"}
    errors = signed_in(owner).post("/organisation/members/", body).context["member_form"].errors
    assert set(errors) == {"username", "email", "password"}, errors


def test_the_schema_states_the_rule_of_an_api_key_name():
    from drf_spectacular.generators import SchemaGenerator

    schema = SchemaGenerator().get_schema(request=None, public=True)
    description = schema["components"]["schemas"]["ApiKeyInRequest"]["properties"]["name"]["description"]
    assert description.startswith("Domain rule:")
    assert "< or >" in description


def test_existing_rows_with_such_names_are_not_rewritten(owner):
    """The rule is for new names: a row stored before it stays as it is, and the organisation's
    other changes (its spend cap, keys) still work."""
    Organisation.objects.filter(pk=owner.membership.organisation_id).update(name="Old <b>Name</b>")
    key = services.api_key_create(organisation=owner.membership.organisation, user=owner, name="ok", scopes=["read"])
    ApiKey.objects.filter(pk=key.key.pk).update(name="old\x07key")
    client = signed_in(owner)
    page = client.get("/organisation/").content.decode()
    assert "Old &lt;b&gt;Name&lt;/b&gt;" in page  # shown escaped, never as markup
    assert client.post("/organisation/spend-cap/", {"monthly_spend_cap": "1000"}).status_code == 302
    assert client.post(f"/organisation/keys/{key.key.pk}/revoke/").status_code == 302
    organisation = Organisation.objects.get(pk=owner.membership.organisation_id)
    assert organisation.name == "Old <b>Name</b>"
    assert organisation.monthly_spend_cap == Decimal("1000")
    assert ApiKey.objects.get(pk=key.key.pk).name == "old\x07key"


# --- the organisation page: CST, yuan, Chinese ---------------------------------------------------


def test_the_organisation_page_shows_times_in_cst_and_money_in_yuan(owner):
    organisation = owner.membership.organisation
    organisation.monthly_spend_cap = Decimal("12345.5")
    organisation.save()
    expires = timezone.now().replace(microsecond=0) + timedelta(days=30)
    services.api_key_create(
        organisation=organisation,
        user=owner,
        name="deploy",
        scopes=["read", "trade"],
        expires_at=expires,
        monthly_spend_cap=Decimal("500"),
    )
    en = signed_in(owner, **EN).get("/organisation/").content.decode()
    assert "Cap: ¥12,345.50." in en
    assert "¥500.00" in en
    shanghai = (expires + timedelta(hours=8)).strftime("%Y-%m-%d %H:%M")
    assert f"{shanghai} CST" in en
    zh = signed_in(owner, **ZH).get("/organisation/").content.decode()
    assert f"{shanghai} 北京时间" in zh
    assert "<td>read, trade</td>" in en  # scopes named for the reader, not the stored "read trade"
    assert "<td>只读、交易</td>" in zh
    for said in ("成员、API 密钥与消费", "月度消费上限", "新建密钥", "添加成员", "权限范围", "所有者"):
        assert said in zh, said


def test_names_check_lists_stored_names_that_break_the_rules_and_changes_nothing(owner):
    from io import StringIO

    from django.core.management import CommandError, call_command

    out = StringIO()
    call_command("names_check", stdout=out)
    assert "Every stored name follows the name rules." in out.getvalue()
    organisation = owner.membership.organisation
    Organisation.objects.filter(pk=organisation.pk).update(name="Old <b>Name</b>")
    key = services.api_key_create(organisation=organisation, user=owner, name="ok", scopes=["read"]).key
    ApiKey.objects.filter(pk=key.pk).update(name="old\x07key")
    out = StringIO()
    with pytest.raises(CommandError, match="2 stored names break the name rules"):
        call_command("names_check", stdout=out)
    listed = out.getvalue()
    assert f"organisation {organisation.pk} 'Old <b>Name</b>'" in listed
    assert f"api key {key.pk} 'old\\x07key'" in listed
    assert Organisation.objects.get(pk=organisation.pk).name == "Old <b>Name</b>"
    assert ApiKey.objects.get(pk=key.pk).name == "old\x07key"


@pytest.mark.django_db
@pytest.mark.parametrize("role", ["provider", "buyer"])
def test_the_home_pages_calls_to_action_preselect_the_role_on_sign_up(client, role):
    html = client.get(f"/signup/?role={role}").content.decode()
    assert re.search(rf'<input[^>]*value="{role}"[^>]*checked', html), html
    other = "buyer" if role == "provider" else "provider"
    assert not re.search(rf'<input[^>]*value="{other}"[^>]*checked', html)
    assert "checked" not in client.get("/signup/?role=admin").content.decode()


def test_the_api_registration_answers_every_refusal_at_once_and_writes_nothing(db, owner):
    taken = owner.membership.organisation.name
    before = counts()
    body = {**GOOD, "organisation": taken, "username": owner.username, "password": "password"}
    response = APIClient().post("/api/v1/auth/register/", json.dumps(body), content_type="application/json")
    assert response.status_code == 400
    errors = response.json()
    assert sorted(errors) == ["organisation", "password", "username"]
    assert "already registered" in errors["organisation"][0]
    assert errors["username"] == ["A user with that username already exists."]
    assert counts() == before
