from pathlib import Path

from django.core.management.base import BaseCommand

from marketplace.services import reference_load, reference_read
from marketplace.services.reference import LLM_REFERENCE_FILE, REFERENCE_FILE


class Command(BaseCommand):
    help = "Load regions, the RTT matrix, GPU models and LLM models from the shipped reference data (idempotent)."

    def add_arguments(self, parser):
        parser.add_argument("--file", type=Path, default=REFERENCE_FILE, help="reference JSON to load")
        parser.add_argument(
            "--llm-file", type=Path, default=LLM_REFERENCE_FILE, help="LLM catalogue JSON (unless --file has one)"
        )

    def handle(self, *args, file: Path, llm_file: Path, **options):
        counts = reference_load(data=reference_read(file, llm_file))
        self.stdout.write(
            f"reference data: {counts.regions} regions, {counts.gpu_models} GPU models, "
            f"{counts.llm_models} LLM models, {counts.rtts} RTT rows written"
        )
