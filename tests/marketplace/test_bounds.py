"""Each input's domain is declared once (``marketplace.bounds``): the pages' forms and the API's
bodies take the same limits from it."""

from pathlib import Path

import pytest

from marketplace import bounds
from marketplace.api.accounts import RegisterIn
from marketplace.api.listings import ListingIn
from marketplace.api.requests import RequestIn
from marketplace.web.forms import ListingForm, RequestForm, SignUpForm

#: The limits Django's form fields and DRF's serializer fields both keep as attributes.
LIMITS = ("min_value", "max_value", "max_digits", "decimal_places", "max_length")
#: Django's EmailField has a default length (320) and DRF's has none: a bound of its own is not declared yet.
NOT_BOUNDED_YET = {"email"}


def limits_of(field) -> dict:
    return {name: getattr(field, name, None) for name in LIMITS}


PAGES_AND_BODIES = [(SignUpForm, RegisterIn), (ListingForm, ListingIn), (RequestForm, RequestIn)]


@pytest.mark.parametrize(("form", "body"), PAGES_AND_BODIES)
def test_a_form_and_its_api_body_take_the_same_limits(form, body):
    api_fields = body().fields
    shared = (set(form.base_fields) & set(api_fields)) - NOT_BOUNDED_YET
    assert len(shared) >= 3
    for name in shared:
        assert limits_of(form.base_fields[name]) == limits_of(api_fields[name]), name


def test_every_bound_says_in_one_line_why_its_limits_are_what_they_are():
    assert len(bounds.ALL) >= 20
    for name, bound in bounds.ALL.items():
        assert bound.reason.strip(), name
        assert "\n" not in bound.reason, name


def test_a_bound_gives_the_fields_only_the_limits_it_has():
    assert bounds.MIN_FREE_GPUS.field_kwargs() == {"min_value": 0}
    assert bounds.VOUCHER_CODE.field_kwargs() == {"max_length": 64}
    assert set(bounds.STATEMENT_MONTH.field_kwargs()) == {"regex"}


def test_the_api_docs_show_every_bound_as_bounds_py_declares_it():
    docs = (Path(__file__).resolve().parents[2] / "docs" / "api.md").read_text()
    block = docs[docs.index("<!-- bounds:start") : docs.index("<!-- bounds:end -->")]
    assert block[block.index("-->") + 3 :].strip() == bounds.markdown()
