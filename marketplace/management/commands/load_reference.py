from pathlib import Path

from django.core.management.base import BaseCommand

from marketplace.services import reference_load, reference_read
from marketplace.services.reference import REFERENCE_FILE


class Command(BaseCommand):
    help = "Load regions, the RTT matrix and GPU models from the shipped reference data (idempotent)."

    def add_arguments(self, parser):
        parser.add_argument("--file", type=Path, default=REFERENCE_FILE, help="reference JSON to load")

    def handle(self, *args, file: Path, **options):
        counts = reference_load(data=reference_read(file))
        self.stdout.write(
            f"reference data: {counts.regions} regions, {counts.gpu_models} GPU models, {counts.rtts} RTT rows written"
        )
