"""A provider's promotion is sponsored by the provider (issue 14, finding 7).

Before, a provider could create a promotion claiming any sponsor ("Shanghai Municipal Government").
``services.vouchers.program_sponsor`` now refuses that; this sets the sponsor of every promotion
already written to its provider's name, and says how many changed. Programmes without a provider
(staff's, the cities') are left as they are. Going back leaves the names as set: the claims they
replace were never true.
"""

from django.db import migrations
from django.db.models import F, OuterRef, Subquery


def sponsor_is_the_provider(apps, schema_editor):
    VoucherProgram = apps.get_model("marketplace", "VoucherProgram")
    Organisation = apps.get_model("marketplace", "Organisation")
    claimed = VoucherProgram.objects.filter(sponsor_provider__isnull=False).exclude(sponsor=F("sponsor_provider__name"))
    provider_name = Organisation.objects.filter(pk=OuterRef("sponsor_provider_id")).values("name")[:1]
    changed = VoucherProgram.objects.filter(pk__in=list(claimed.values_list("pk", flat=True))).update(
        sponsor=Subquery(provider_name)
    )
    print(f"\n  promotions whose sponsor was not their provider, now their provider's name: {changed}")


class Migration(migrations.Migration):
    dependencies = [
        ("marketplace", "0008_rows_left_out"),
    ]

    operations = [
        migrations.RunPython(sponsor_is_the_provider, migrations.RunPython.noop),
    ]
