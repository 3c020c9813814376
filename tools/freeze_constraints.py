"""Print pip constraints for the image: the versions installed here of AER's dependency
closure (its ``[project] dependencies``, their extras, and everything they need, recursively).

    python tools/freeze_constraints.py > constraints.txt

The versions come from this environment's installed distributions (what ``pip freeze`` lists),
filtered to the packages the service needs: no test tools, no unrelated packages, and no
packaging tools (pip, setuptools, wheel).
"""

from __future__ import annotations

import sys
import tomllib
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent
#: Packaging tools some packages list: the image's own (newer) ones are kept.
TOOLING = {"pip", "setuptools", "wheel"}


def closure(requirements: list[str]) -> dict[str, str]:
    """``{name: version}`` of the installed distributions ``requirements`` need, recursively."""
    pending = [(Requirement(r), frozenset()) for r in requirements]
    seen: dict[str, set[str]] = {}
    versions: dict[str, str] = {}
    while pending:
        req, parent_extras = pending.pop()
        env = {"extra": ""}
        if req.marker and not any(
            req.marker.evaluate(env | {"extra": e}) for e in (parent_extras or {""})
        ):
            continue
        name = canonicalize_name(req.name)
        extras = set(req.extras)
        if name in seen and extras <= seen[name]:
            continue
        seen.setdefault(name, set()).update(extras)
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            sys.exit(f"{name} is required but not installed here")
        versions[name] = dist.version
        wanted = frozenset(seen[name])
        pending += [(Requirement(r), wanted) for r in dist.requires or []]
    return versions


def main() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    versions = closure(project["dependencies"])
    print("# The image's pinned dependency versions: python tools/freeze_constraints.py")
    print(f"# (Python {sys.version_info.major}.{sys.version_info.minor}, as in the Dockerfile)")
    for name in sorted(set(versions) - TOOLING):
        print(f"{name}=={versions[name]}")


if __name__ == "__main__":
    main()
