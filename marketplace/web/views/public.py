"""The capacity board, sign-in, sign-out, sign-up and the password pages: pages anyone may open
(bar the password change)."""

from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import login
from django.contrib.auth.views import (
    LogoutView,
    PasswordChangeView,
    PasswordResetCompleteView,
    PasswordResetConfirmView,
    PasswordResetDoneView,
    PasswordResetView,
)
from django.shortcuts import redirect, render
from django.urls import reverse, reverse_lazy
from django.utils.translation import gettext, gettext_lazy

from marketplace import selectors, services
from marketplace.account_limits import password_reset_wait, sign_up_wait
from marketplace.errors import DomainError
from marketplace.models import Organisation
from marketplace.web.forms import BoardForm, SignUpForm
from marketplace.web.map import board_map, board_row, latency_class_name
from matching.latency import LatencyClass

DEFAULT_ORIGIN = "shanghai"
SIGN_UP_REFUSAL = gettext_lazy("Too many sign-ups from this address. Try again later.")
RESET_REFUSAL = gettext_lazy("Too many password resets asked for from this address. Try again later.")


def board(request):
    """The home page: what the market does and where to start (list GPUs, rent GPUs), then idle
    GPUs by region and latency class seen from ``?origin=`` (a region code), as a map and a table,
    optionally of one ``?gpu_model=``. Bad parameters show the form's errors (400)."""
    form = BoardForm(request.GET or {"origin": DEFAULT_ORIGIN})
    if not form.is_valid():
        return render(request, "web/board.html", {"form": form}, status=400)
    origin, gpu_model = form.cleaned_data["origin"], form.cleaned_data["gpu_model"]
    rows = selectors.capacity_board(origin=origin, gpu_model=gpu_model)
    drawn = board_map(rows, origin_code=origin.code)
    total_free = sum(row.free_gpus for row in rows)
    if gpu_model is None:
        idle_rows = [(row.region.code, row.free_gpus) for row in rows if row.free_gpus]
    else:  # the home page's figure is of every model, whatever the filter
        idle_rows = [(row.region, row.free_gpus) for row in selectors.capacity_by_region(origin=origin)]
    numbers = {p.item.region.code: p.number for p in drawn["points"]}
    context = {
        "form": form,
        "origin": origin,
        "gpu_model": gpu_model,
        "rows": rows,
        "table": [board_row(row, numbers[row.region.code]) for row in rows],
        "map": drawn,
        "points": drawn["points"],
        "latency_classes": [latency_class_name(c) for c in LatencyClass],
        "total_free": total_free,
        "idle_everywhere": sum(free for _, free in idle_rows),
        "idle_regions": len({code for code, _ in idle_rows}),
    }
    return render(request, "web/board.html", context)


def home_for_user(request):
    """Where a signed-in user starts: staff the monitor, providers and buyers their page."""
    if request.user.is_staff:
        return redirect("web:monitor")
    organisation = selectors.organisation_of(request.user)
    if organisation is None:
        return redirect("web:board")
    return redirect("web:provider" if organisation.kind == Organisation.Kind.PROVIDER else "web:buyer")


def sign_up(request):
    """Create a provider or buyer account through ``account_register``, then sign it in. Sign-ups
    from one address share the API registration's rate (``account_limits.SignUpRateThrottle``):
    over it, the page again with a message, 429 and ``Retry-After``, before anything is checked."""
    wait = sign_up_wait(request) if request.method == "POST" else None
    if wait is not None:
        return _sign_up_refused(request, wait)
    # The home page's "List your GPUs" / "Rent GPUs" links arrive with ?role=provider|buyer.
    role = request.GET.get("role")
    initial = {"role": role} if role in Organisation.Kind.values else {}
    form = SignUpForm(request.POST or None, initial=initial)
    if request.method == "POST" and form.is_valid():
        try:
            user = services.account_register(**form.cleaned_data)
        except DomainError as error:
            form.add_domain_error(error)
        else:
            login(request, user, backend="django.contrib.auth.backends.ModelBackend")
            messages.success(request, gettext("Welcome, %(name)s.") % {"name": user.username})
            return redirect(reverse("web:home"))
    return render(request, "web/signup.html", {"form": form}, status=400 if form.errors else 200)


def _sign_up_refused(request, wait: int):
    form = SignUpForm(initial=request.POST.dict())  # what was typed, bar the password, unchecked
    response = render(request, "web/signup.html", {"form": form, "refusal": SIGN_UP_REFUSAL}, status=429)
    response["Retry-After"] = str(wait)
    return response


class SignOut(LogoutView):
    """Sign out, and end the user's API credentials with the session (``user_credentials_revoke``):
    a token or key copied from a signed-in browser does not outlive it."""

    def post(self, request, *args, **kwargs):
        if request.user.is_authenticated:
            services.user_credentials_revoke(user=request.user)
        return super().post(request, *args, **kwargs)


class PasswordChange(PasswordChangeView):
    """Change the password; this session stays signed in, every API credential of the user ends."""

    template_name = "web/password_change.html"
    success_url = reverse_lazy("web:home")

    def form_valid(self, form):
        response = super().form_valid(form)
        services.user_credentials_revoke(user=self.request.user)
        messages.success(self.request, gettext("Password changed; your API tokens and keys were revoked."))
        return response


class PasswordReset(PasswordResetView):
    """Asks for an address and e-mails each active user with a usable password at it a one-time
    link (Django's token), in the language of the page. The answer is the same whether or not
    any account has the address, so the page tells nobody which addresses are registered. Asks from
    one address beyond ``THROTTLE_PASSWORD_RESET`` get the page again with a message, 429 and
    ``Retry-After``, and no e-mail."""

    template_name = "web/password_reset.html"
    subject_template_name = "web/password_reset_subject.txt"
    email_template_name = "web/password_reset_email.txt"
    success_url = reverse_lazy("web:password-reset-done")

    def post(self, request, *args, **kwargs):
        wait = password_reset_wait(request)
        if wait is None:
            return super().post(request, *args, **kwargs)
        form = self.form_class(initial={"email": request.POST.get("email", "")})
        response = render(request, self.template_name, {"form": form, "refusal": RESET_REFUSAL}, status=429)
        response["Retry-After"] = str(wait)
        return response

    def form_valid(self, form):
        self.extra_email_context = {"valid_days": max(1, settings.PASSWORD_RESET_TIMEOUT // 86400)}
        return super().form_valid(form)


class PasswordResetDone(PasswordResetDoneView):
    template_name = "web/password_reset_done.html"


class PasswordResetConfirm(PasswordResetConfirmView):
    """The e-mailed link: a new password (by ``AUTH_PASSWORD_VALIDATORS``, stated on the page).
    Setting it ends every API credential of the user, as a password change does: a reset is often
    the answer to a leaked password."""

    template_name = "web/password_reset_confirm.html"
    success_url = reverse_lazy("web:password-reset-complete")

    def form_valid(self, form):
        response = super().form_valid(form)
        services.user_credentials_revoke(user=form.user)
        return response


class PasswordResetComplete(PasswordResetCompleteView):
    template_name = "web/password_reset_complete.html"
