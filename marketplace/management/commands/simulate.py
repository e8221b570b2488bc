import argparse
import json
import logging
from datetime import datetime
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from marketplace.simulation.progress import ProgressBar, ProgressFile
from marketplace.simulation.scenario import DEFAULT_SCENARIO, SCENARIOS
from marketplace.simulation.variants import VARIANTS
from matching.policies import ENGINE

ALL = "all"
#: Where a side-by-side run starts when --start is not given: midnight, China Standard Time, on a
#: Monday. Every policy must start at the same instant to replay the same demand.
DEFAULT_START = "2026-03-02T00:00:00+08:00"


class Command(BaseCommand):
    help = (
        "Drive the real marketplace (services and matching rounds) through simulated days of seeded "
        "supply and demand. --policy engine|nearest|cheapest|market runs one policy (market: the engine "
        "with providers following the price guidance) against the current database; --policy all "
        "replays the same demand under each on its own fresh SQLite database (in parallel) and prints "
        "them side by side with the issue's targets; --report DIR also writes the Markdown report and "
        "plots. --scenario idle80: capacity far above demand. --scenario inference: inference demand "
        "(an LLM at a tokens/s target under a TTFT target) under the engine, the engine held to each "
        "buyer's first-choice GPU model (--policy engine-first-choice) and nearest-region-first."
    )

    def add_arguments(self, parser):
        parser.add_argument("--policy", choices=[*VARIANTS, ALL], default=ENGINE, help="default: engine")
        parser.add_argument(
            "--scenario", choices=list(SCENARIOS), default=DEFAULT_SCENARIO, help=f"default: {DEFAULT_SCENARIO}"
        )
        parser.add_argument("--days", type=float, default=1.0, help="simulated days of demand (default 1)")
        parser.add_argument("--seed", type=int, default=2026, help="random seed (default 2026)")
        parser.add_argument(
            "--speed",
            type=float,
            default=0.0,
            help="simulated minutes per real second; 0 (default) runs as fast as possible with the market clock frozen",
        )
        parser.add_argument("--step-minutes", type=int, default=30, help="simulated minutes per step (default 30)")
        parser.add_argument("--scale", type=float, default=1.0, help="multiplies capacity and demand (default 1)")
        parser.add_argument(
            "--start",
            type=datetime.fromisoformat,
            default=None,
            help=f"aware ISO time the run starts at speed 0 (default: now; {DEFAULT_START} with --policy all)",
        )
        parser.add_argument("--json", type=Path, help="write the figures as JSON here")
        parser.add_argument("--report", type=Path, help="with --policy all: write README.md and plots here")
        parser.add_argument("--jobs", type=int, default=3, help="with --policy all: policies run at once (default 3)")
        parser.add_argument("--progress-file", type=Path, help=argparse.SUPPRESS)

    def handle(self, *args, **options):
        if options["start"] is not None and options["start"].tzinfo is None:
            raise CommandError("--start needs a time zone, e.g. 2026-03-02T00:00:00+08:00")
        if options["report"] and options["policy"] != ALL:
            raise CommandError("--report compares the policies: use it with --policy all")
        if options["policy"] == ALL:
            self._compare(options)
        else:
            self._one(options)

    def _config(self, options, policy: str):
        from marketplace.simulation.runner import SimulationConfig

        try:
            return SimulationConfig(
                seed=options["seed"],
                days=options["days"],
                step_minutes=options["step_minutes"],
                scale=options["scale"],
                policy=policy,
                speed=options["speed"],
                start=options["start"],
                scenario=options["scenario"],
            )
        except ValueError as exc:
            raise CommandError(str(exc)) from None

    def _one(self, options):
        from marketplace.simulation.report import summary_table
        from marketplace.simulation.runner import simulation_run

        config = self._config(options, options["policy"])
        progress = ProgressFile(options["progress_file"]) if options["progress_file"] else ProgressBar()
        logging.getLogger("matching").setLevel(logging.WARNING)  # a line per round would bury the bar
        try:
            figures = simulation_run(config, progress)
        finally:
            getattr(progress, "close", lambda: None)()
        self._write_json(options["json"], figures)
        if not options["progress_file"]:
            self.stdout.write(summary_table({config.policy: figures}))

    def _compare(self, options):
        from marketplace.simulation.compare import policies_compare
        from marketplace.simulation.report import report_write, summary_table, target_lines

        if options["speed"]:
            raise CommandError("--policy all runs as fast as possible: leave --speed at 0")
        options["start"] = options["start"] or datetime.fromisoformat(DEFAULT_START)
        config = self._config(options, ENGINE)
        variants = SCENARIOS[options["scenario"]].variants
        outcomes = policies_compare(config=config, policies=list(variants), jobs=options["jobs"])
        self._write_json(options["json"], outcomes)
        self.stdout.write(summary_table(outcomes))
        self.stdout.write("\n".join(target_lines(outcomes)))
        if options["report"]:
            written = report_write(outcomes, options["report"], command=_command_line(options))
            self.stdout.write(f"report: {', '.join(str(path) for path in written)}")

    @staticmethod
    def _write_json(path: Path | None, data) -> None:
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n", encoding="utf-8")


def _command_line(options) -> str:
    """The command that reproduces a comparison, for the report to quote."""
    parts = ["manage.py simulate --policy all", f"--days {options['days']:g}", f"--seed {options['seed']}"]
    if options["scenario"] != DEFAULT_SCENARIO:
        parts.append(f"--scenario {options['scenario']}")
    if options["scale"] != 1:
        parts.append(f"--scale {options['scale']:g}")
    if options["step_minutes"] != 30:
        parts.append(f"--step-minutes {options['step_minutes']}")
    if options["report"]:
        parts.append(f"--report {options['report']}")
    return " ".join(parts)
