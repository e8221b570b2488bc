#!/usr/bin/env python3
"""Copy the web pages' browser assets (htmx, Chart.js) from the npm registry into the static dir.

package.json names the packages and, under ``staticAssets``, which file of each package goes where;
package-lock.json pins each version and its sha512 integrity. This script needs only the Python
standard library and npm: ``npm pack`` fetches each package's tarball once, this refuses it unless
the hash matches the lock, and writes the named files into marketplace/static/vendor/. Update a
version with ``npm install --package-lock-only <pkg>@<version>``, then ``make assets``.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENDOR_DIR = ROOT / "marketplace" / "static" / "vendor"


def verified_tarball(name: str, entry: dict) -> bytes:
    """The package's tarball, fetched by ``npm pack`` from npm's configured registry and checked
    against the lock's ``sha512-…`` integrity; exits on a mismatch or when npm is missing."""
    if shutil.which("npm") is None:
        sys.exit("npm is needed to fetch the web pages' assets (htmx, Chart.js): install Node.js and npm")
    with tempfile.TemporaryDirectory() as folder:
        packed = subprocess.run(  # noqa: S603 - fixed npm command, package names from our own lock
            ["npm", "pack", f"{name}@{entry['version']}", "--pack-destination", folder, "--json", "--silent"],  # noqa: S607
            capture_output=True, text=True, check=True, timeout=300,
        )
        filename = json.loads(packed.stdout)[0]["filename"]
        data = (Path(folder) / filename).read_bytes()
    algorithm, _, expected = entry["integrity"].partition("-")
    digest = base64.b64encode(hashlib.new(algorithm, data).digest()).decode()
    if digest != expected:
        sys.exit(f"{name}@{entry['version']}: integrity mismatch against package-lock.json")
    return data


def main() -> None:
    manifest = json.loads((ROOT / "package.json").read_text())
    lock = json.loads((ROOT / "package-lock.json").read_text())["packages"]
    wanted: dict[str, dict[str, str]] = {}
    for source, target in manifest["staticAssets"].items():
        package, _, inner = source.partition("/dist/")
        wanted.setdefault(package, {})[f"package/dist/{inner}"] = target
    VENDOR_DIR.mkdir(parents=True, exist_ok=True)
    for package, files in wanted.items():
        entry = lock[f"node_modules/{package}"]
        with tarfile.open(fileobj=io.BytesIO(verified_tarball(package, entry)), mode="r:gz") as archive:
            for member_name, target in files.items():
                content = archive.extractfile(member_name).read()
                (VENDOR_DIR / target).write_bytes(content)
                print(f"{package}@{entry['version']}: {member_name} -> {VENDOR_DIR.relative_to(ROOT) / target}")


if __name__ == "__main__":
    main()
