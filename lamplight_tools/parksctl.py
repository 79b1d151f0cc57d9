"""``lamplight parks``: the parks' configurations, declared in a file.

    lamplight parks apply -f parks.yaml [--dry-run] [--yes] [--wait S]
    lamplight parks get PARK

Like ``kubectl apply``: each park of the file is compared with what the
gateway has, the difference is printed as a unified diff, and only then —
after a yes, or with ``--yes`` — is each changed park sent as its next
version. ``--dry-run`` prints the diff and exits 1 if anything differs (0
if nothing would change). The gateway is LAMPLIGHT_GATEWAY (default
http://127.0.0.1:8000) and the credential LAMPLIGHT_API_KEY (a platform
admin's key to create parks; a park admin's to change their own).
"""
import difflib
import json
import os
import sys
import time

import requests
import yaml

from lamplight_tools import parks as parks_file

SECTIONS = ("name", "needs", "volunteers", "notify", "points")
DEFAULT_GATEWAY = "http://127.0.0.1:8000"


class Gateway:
    def __init__(self, url, api_key):
        if not api_key:
            raise SystemExit("no credential: set LAMPLIGHT_API_KEY or pass --api-key")
        self.url = url.rstrip("/")
        self.http = requests.Session()
        self.http.headers["Authorization"] = "Bearer " + api_key

    def get_park(self, park):
        answer = self.http.get("{}/api/v1/parks/{}".format(self.url, park), timeout=30)
        if answer.status_code == 404:
            return None
        _raise_for(answer)
        return answer.json()

    def put_park(self, park, body):
        answer = self.http.put("{}/api/v1/parks/{}".format(self.url, park), json=body, timeout=60)
        _raise_for(answer)
        return answer.json()

    def get(self, park, path):
        return self.http.get("{}/api/v1/parks/{}{}".format(self.url, park, path), timeout=30)


def _raise_for(answer):
    if answer.status_code >= 400:
        try:
            error = answer.json()["error"]
            detail = "{}: {}{}".format(error["code"], error["message"], " " + json.dumps(
                error["fields"], ensure_ascii=False) if error.get("fields") else "")
        except (ValueError, KeyError, TypeError):
            detail = answer.text[:500]
        raise SystemExit("{} {} → {} {}".format(answer.request.method, answer.request.url, answer.status_code, detail))


def desired(spec):
    """The part of a park's entry in the file that is its configuration
    (resources and projects are the needs service's lists, loaded apart)."""
    return {name: spec.get(name) for name in SECTIONS if spec.get(name) is not None}


def as_yaml(config):
    return yaml.safe_dump(config, allow_unicode=True, sort_keys=True, default_flow_style=False, width=120)


def diff(park, current, wanted):
    before = as_yaml(desired(current)) if current else ""
    label = "park/{} (version {})".format(park, current["version"]) if current else "park/{} (new)".format(park)
    return list(difflib.unified_diff(before.splitlines(keepends=True), as_yaml(wanted).splitlines(keepends=True),
                                     fromfile=label, tofile="park/{} (file)".format(park)))


def _colour(line, tty):
    if not tty:
        return line
    if line.startswith("+") and not line.startswith("+++"):
        return "\033[32m" + line + "\033[0m"
    if line.startswith("-") and not line.startswith("---"):
        return "\033[31m" + line + "\033[0m"
    return line


def wait_installed(gateway, park, wanted, version, timeout):
    """Until each service answers with the section it was sent (the
    park.configured event was projected), or timeout seconds."""
    deadline = time.monotonic() + timeout
    paths = {"needs": "/needs/config", "volunteers": "/volunteers/config", "notify": "/notify/config",
             "points": "/points/rules"}
    pending = [name for name in paths if name in wanted]
    while pending and time.monotonic() < deadline:
        answer = {name: gateway.get(park, paths[name]) for name in pending}
        pending = [name for name, a in answer.items()
                   if a.status_code != 200 or (a.json().get("park_version") or 0) < version]
        if pending:
            time.sleep(0.5)
    return pending


def apply(path, gateway, dry_run=False, yes=False, wait=0.0, out=sys.stdout, ask=input):
    """Returns the exit code: 0 applied or nothing to do, 1 a dry run found
    changes, 2 declined."""
    parks = parks_file.load(path)
    tty = hasattr(out, "isatty") and out.isatty()
    plans = []
    for park, spec in parks.items():
        wanted = desired(spec)
        current = gateway.get_park(park)
        lines = diff(park, current, wanted)
        if not lines:
            print("park/{} unchanged (version {})".format(park, current["version"]), file=out)
            continue
        out.writelines(_colour(line, tty) for line in lines)
        if lines and not lines[-1].endswith("\n"):
            out.write("\n")
        plans.append((park, current, wanted))
    if not plans:
        return 0
    if dry_run:
        print("{} park(s) would change (dry run: nothing sent)".format(len(plans)), file=out)
        return 1
    if not yes and ask("apply {} park(s)? [y/N] ".format(len(plans))).strip().lower() not in ("y", "yes"):
        print("nothing applied", file=out)
        return 2
    for park, current, wanted in plans:
        answer = gateway.put_park(park, dict(wanted, version=(current["version"] if current else 0) + 1))
        print("park/{} {} version {} (changed: {})".format(
            park, "created at" if not current else "now at", answer["version"],
            ", ".join(answer["changed"]) or "nothing"), file=out)
        if wait:
            pending = wait_installed(gateway, park, wanted, answer["version"], wait)
            if pending:
                print("park/{}: not yet installed by {} after {:.0f} s".format(park, ", ".join(pending), wait),
                      file=out)
                return 1
            print("park/{}: installed by every service".format(park), file=out)
    return 0


def main(args):
    gateway = Gateway(args.gateway or os.environ.get("LAMPLIGHT_GATEWAY") or DEFAULT_GATEWAY,
                      args.api_key or os.environ.get("LAMPLIGHT_API_KEY"))
    if args.command == "apply":
        return apply(args.file, gateway, dry_run=args.dry_run, yes=args.yes, wait=args.wait)
    park = gateway.get_park(args.park)
    if park is None:
        raise SystemExit("no park {}".format(args.park))
    print(as_yaml({"parks": {args.park: desired(park)}}), end="")
    return 0
