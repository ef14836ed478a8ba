"""Print the requirements of pyproject.toml extras, one per line (no self-references).

    python3 docker/requirements.py pyproject.toml gateway

Used inside the image builds (so that the dependency layer depends on pyproject.toml only,
not on the sources) and by docker/build-images.py to key its wheelhouses.
"""

import re
import sys
import tomllib


def requirements(pyproject: str, extras: list[str]) -> list[str]:
    with open(pyproject, "rb") as f:
        project = tomllib.load(f)["project"]
    name = project["name"]
    optional = project.get("optional-dependencies", {})
    seen: list[str] = list(project.get("dependencies", []))
    todo = list(extras)
    done: set[str] = set()
    while todo:
        extra = todo.pop(0)
        if extra in done:
            continue
        done.add(extra)
        for req in optional[extra]:
            m = re.fullmatch(rf"{re.escape(name)}\[([^\]]+)\]", req.strip())
            if m:
                todo += [e.strip() for e in m.group(1).split(",")]
            elif req not in seen:
                seen.append(req)
    return seen


if __name__ == "__main__":
    print("\n".join(requirements(sys.argv[1], sys.argv[2:])))
