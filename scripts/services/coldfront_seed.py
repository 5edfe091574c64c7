"""Part of scripts/services/coldfront.sh: ColdFront content through Django's ORM (run by ColdFront's own venv
python with DJANGO_SETTINGS_MODULE=coldfront.config.settings and COLDFRONT_ENV set by the script).

    coldfront_seed.py accounts STAFF MEMBER   ensure the two API accounts and their tokens; prints
                                              "STAFF_TOKEN MEMBER_TOKEN" on one line of stdout
    coldfront_seed.py load FILE STAFF MEMBER  replace resources, users (but STAFF and MEMBER), projects and
                                              allocations with what the seed FILE describes (format: coldfront.sh)

Why the ORM and not the web UI or the API: the API is read-only, and the ORM runs the models' own validation
(full_clean: attribute value types, allocation dates, project title/description rules), so a seed ColdFront
would refuse fails here too. Everything happens in one transaction: a bad seed leaves the old content.
"""

from __future__ import annotations

import datetime as dt
import json
import sys
from pathlib import Path
from typing import Any

import django

django.setup()  # before any model import

from coldfront.core.allocation import models as am  # noqa: E402
from coldfront.core.field_of_science.models import FieldOfScience  # noqa: E402
from coldfront.core.project import models as pm  # noqa: E402
from coldfront.core.resource import models as rm  # noqa: E402
from django.contrib.auth.models import User  # noqa: E402
from django.core.exceptions import ValidationError  # noqa: E402
from django.db import transaction  # noqa: E402
from rest_framework.authtoken.models import Token  # noqa: E402

JUSTIFICATION = "Seeded by scripts/services/coldfront_seed.py."
DESCRIPTION = "Seeded by scripts/services/coldfront_seed.py for the xdmod-usage tests."


class SeedError(Exception):
    """The seed file is inconsistent or ColdFront's validation refused a row."""


def ensure_accounts(staff: str, member: str) -> tuple[str, str]:
    """A staff superuser (reads everything, user names included) and an ordinary user who is PI of nothing.

    Token-only accounts: no usable password. Tokens are kept while the database lives.
    """
    tokens = []
    for username, privileged in ((staff, True), (member, False)):
        user, _ = User.objects.get_or_create(username=username)
        user.is_staff = user.is_superuser = privileged
        user.is_active = True
        user.first_name, user.last_name = ("XDMoD", "Feeder") if privileged else ("Plain", "Member")
        user.email = f"{username}@localhost"
        user.set_unusable_password()
        user.save()
        tokens.append(Token.objects.get_or_create(user=user)[0].key)
    return tokens[0], tokens[1]


def checked(obj: Any, what: str, exclude: list[str] | None = None) -> Any:
    """full_clean() then save(): ColdFront's own rules apply to seeded rows too."""
    try:
        obj.full_clean(exclude=exclude)
    except ValidationError as exc:
        raise SeedError(f"{what}: {'; '.join(exc.messages)}") from exc
    obj.save()
    return obj


def one(model: Any, what: str, **lookup: Any) -> Any:
    try:
        return model.objects.get(**lookup)
    except model.DoesNotExist:
        known = ", ".join(sorted(map(str, model.objects.values_list("name", flat=True)))) if "name" in lookup else ""
        wanted = next(iter(lookup.values()))
        raise SeedError(f"unknown {what} {wanted!r}" + (f" (known: {known})" if known else "")) from None


def parse_date(value: Any, default: dt.date | None) -> dt.date | None:
    if value is None:
        return default
    return dt.date.fromisoformat(str(value))


def as_entries(items: list[Any], default_status: str, **extra: str) -> list[dict[str, str]]:
    """Members given as "username" or {"username": ..., "status": ..., "role": ...}."""
    out = []
    for item in items:
        entry = {"username": item} if isinstance(item, str) else dict(item)
        out.append({"status": default_status, **extra, **entry})
    return out


def attribute_type(kind: str, name: str, data_type: str) -> Any:
    """The named (Project|Allocation)AttributeType; created (public, data type ``data_type``) if missing."""
    if kind == "project":
        found = pm.ProjectAttributeType.objects.filter(name=name).first()
        if found is None:
            base, _ = pm.AttributeType.objects.get_or_create(name=data_type)
            found = pm.ProjectAttributeType.objects.create(name=name, attribute_type=base, is_private=False)
        return found
    found = am.AllocationAttributeType.objects.filter(name=name).first()
    if found is None:
        base, _ = am.AttributeType.objects.get_or_create(name=data_type)
        found = am.AllocationAttributeType.objects.create(name=name, attribute_type=base, is_private=False)
    return found


def load(seed: dict[str, Any], staff: str, member: str) -> dict[str, int]:
    unknown = set(seed) - {"resources", "users", "projects", "allocations", "attribute_types"}
    if unknown:
        raise SeedError(f"unknown top-level keys: {sorted(unknown)}")
    types = seed.get("attribute_types", {})
    today = dt.date.today()

    # Replace: allocations and projects first (their attributes, users and usages cascade), then resources
    # and every user but the two API accounts.
    am.Allocation.objects.all().delete()
    pm.Project.objects.all().delete()
    rm.Resource.objects.all().delete()
    User.objects.exclude(username__in=[staff, member]).delete()

    for item in seed.get("resources", []):
        checked(rm.Resource(name=item["name"], description=item.get("description", DESCRIPTION),
                            resource_type=one(rm.ResourceType, "resource type", name=item["resource_type"]),
                            is_allocatable=item.get("is_allocatable", True),
                            is_available=item.get("is_available", True)), f"resource {item['name']!r}")  # fmt: skip

    users: dict[str, User] = {}
    for item in seed.get("users", []):
        if item["username"] in (staff, member):
            raise SeedError(f"user {item['username']!r} is reserved for the API accounts")
        user = User(username=item["username"], first_name=item.get("first_name", ""),
                    last_name=item.get("last_name", ""), email=item.get("email", ""), is_active=True)  # fmt: skip
        user.set_unusable_password()
        users[user.username] = checked(user, f"user {item['username']!r}", exclude=["password"])

    def user(name: str, where: str) -> User:
        if name not in users:
            raise SeedError(f"{where}: user {name!r} is not in the seed's users")
        return users[name]

    projects: dict[str, pm.Project] = {}
    for item in seed.get("projects", []):
        title = item["title"]
        where = f"project {title!r}"
        if title in projects:
            raise SeedError(f"{where}: titles must be unique in a seed (allocations name their project by title)")
        pi = user(item["pi"], where)
        if not pi.userprofile.is_pi:
            pi.userprofile.is_pi = True
            pi.userprofile.save()
        fos = FieldOfScience.objects.get(pk=FieldOfScience.DEFAULT_PK)
        if item.get("field_of_science"):
            fos = one(FieldOfScience, "field of science", description=item["field_of_science"])
        project = checked(pm.Project(title=title, pi=pi, description=item.get("description", DESCRIPTION),
                                     field_of_science=fos, institution=item.get("institution", "None"),
                                     status=one(pm.ProjectStatusChoice, "project status", name=item["status"])),
                          where)  # fmt: skip
        projects[title] = project
        # As ColdFront's own "create project" view does: the PI is an active Manager of the project.
        members = [{"username": pi.username, "role": "Manager", "status": "Active"}]
        members += [m for m in as_entries(item.get("users", []), "Active", role="User") if m["username"] != pi.username]
        for entry in members:
            role = one(pm.ProjectUserRoleChoice, "project user role", name=entry["role"])
            state = one(pm.ProjectUserStatusChoice, "project user status", name=entry["status"])
            member_row = pm.ProjectUser(project=project, user=user(entry["username"], where), role=role, status=state)
            checked(member_row, f"{where} user {entry['username']!r}")
        for name, value in item.get("attributes", {}).items():
            kind = attribute_type("project", name, types.get("project", {}).get(name, "Text"))
            checked(pm.ProjectAttribute(proj_attr_type=kind, project=project, value=str(value)),
                    f"{where} attribute {name!r}")  # fmt: skip

    count = 0
    for number, item in enumerate(seed.get("allocations", []), 1):
        where = f"allocation #{number} ({item.get('project')!r} on {item.get('resource')!r})"
        if item.get("project") not in projects:
            raise SeedError(f"{where}: project {item.get('project')!r} is not in the seed's projects")
        status = one(am.AllocationStatusChoice, "allocation status", name=item["status"])
        # ColdFront requires dates for Active (start, end) and Expired (end in the past) allocations.
        if status.name == "Expired":
            start, end = today - dt.timedelta(days=730), today - dt.timedelta(days=365)
        elif status.name in ("Active", "Renewal Requested"):
            start, end = today - dt.timedelta(days=180), today + dt.timedelta(days=185)
        else:
            start = end = None
        allocation = checked(am.Allocation(project=projects[item["project"]], status=status,
                                           quantity=item.get("quantity", 1),
                                           start_date=parse_date(item.get("start_date"), start),
                                           end_date=parse_date(item.get("end_date"), end),
                                           justification=item.get("justification", JUSTIFICATION),
                                           description=item.get("description")), where)  # fmt: skip
        allocation.resources.add(one(rm.Resource, "resource", name=item["resource"]))
        for entry in as_entries(item.get("users", []), "Active"):
            state = one(am.AllocationUserStatusChoice, "allocation user status", name=entry["status"])
            user_row = am.AllocationUser(allocation=allocation, user=user(entry["username"], where), status=state)
            checked(user_row, f"{where} user {entry['username']!r}")
        for name, value in item.get("attributes", {}).items():
            kind = attribute_type("allocation", name, types.get("allocation", {}).get(name, "Text"))
            checked(am.AllocationAttribute(allocation_attribute_type=kind, allocation=allocation, value=str(value)),
                    f"{where} attribute {name!r}")  # fmt: skip
        count += 1
    return {"resources": rm.Resource.objects.count(), "users": len(users), "projects": len(projects),
            "allocations": count}  # fmt: skip


def main(argv: list[str]) -> int:
    if len(argv) == 3 and argv[0] == "accounts":
        with transaction.atomic():
            print(*ensure_accounts(argv[1], argv[2]))
        return 0
    if len(argv) == 4 and argv[0] == "load":
        seed = json.loads(Path(argv[1]).read_text(encoding="utf-8"))
        try:
            with transaction.atomic():
                ensure_accounts(argv[2], argv[3])
                counts = load(seed, argv[2], argv[3])
        except (SeedError, KeyError, ValueError, TypeError) as exc:
            print(f"coldfront_seed: {argv[1]}: {type(exc).__name__}: {exc}", file=sys.stderr)
            return 1
        print("loaded " + ", ".join(f"{n} {k}" for k, n in counts.items()), file=sys.stderr)
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
