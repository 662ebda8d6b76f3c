"""``postroom apply FILE.yaml``: an idempotent upsert of every record in the file.

The whole file is validated first and written in one transaction: a file with an
error changes nothing. In account entries, ``${NAME}`` is replaced by the
environment variable ``NAME`` so that secrets stay out of the file.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml
from pydantic import BaseModel, ValidationError
from sqlalchemy import Connection

from postroom.accounts import EmailAccount
from postroom.auth import AuthProfile
from postroom.cases.models import CaseType
from postroom.cases.references import undeclared_references
from postroom.config.checks import (
    check_encryption,
    check_endpoints,
    check_keystore,
    check_profile,
    check_signing,
    check_steps,
)
from postroom.config.files import (
    read_certificate_files,
    read_dkim_key,
    read_file_field,
    read_images,
    read_inbound_files,
    read_keystore_file,
)
from postroom.config.webhooks import check_webhooks, put_webhooks
from postroom.correspondence import Correspondence, Renderer
from postroom.correspondence.content_ids import check_content_ids
from postroom.errors import ConfigurationError, ExistsError
from postroom.keystores.models import Keystore
from postroom.operators import Operator
from postroom.records import Change
from postroom.text import (
    check_tree,
    check_unicode,
    decode_utf8,
    join_surrogate_pairs,
    printable,
)
from postroom.validation import single_line
from postroom.webhooks.endpoints import WebhookEndpoint

if TYPE_CHECKING:
    from postroom.app import Postroom

# ${NAME} or ${NAME:-default}, as in a shell.
_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
SECTIONS = (
    "operators", "auth_profiles", "keystores", "accounts", "correspondence", "case_types",
    "webhooks",
)  # fmt: skip
_SECRETS = {
    "accounts": "password", "auth_profiles": "client_secret", "keystores": "password",
    "webhooks": "secret",
}  # fmt: skip
MAX_FILE_BYTES = 10 * 1024 * 1024
_NAMES = ("name", "id", "class_name")  # what identifies a record of each section


class _Loader(yaml.SafeLoader):
    """YAML 1.2 booleans: only true/false. (In YAML 1.1 a step's ``on:`` key is True.)"""


_Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)


def parse_yaml(text: str) -> Any:
    """Parse YAML text with 1.2 booleans (and JSON's escaped surrogate pairs joined)."""
    return join_surrogate_pairs(yaml.load(text, Loader=_Loader))  # noqa: S506 - a SafeLoader


@dataclass
class ApplyReport:
    """What an apply changed, record by record, and what deserves a second look."""

    changes: list[tuple[str, str, Change]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def count(self, change: Change) -> int:
        return sum(1 for *_, c in self.changes if c == change)


def load_config(source: Path | str | dict[str, Any]) -> tuple[dict[str, Any], Path]:
    """The mapping in ``source`` (a path or an already-parsed mapping) and its folder."""
    if isinstance(source, dict):
        return check_tree(source, field="records: "), Path.cwd()
    path = Path(source)
    try:
        if path.stat().st_size > MAX_FILE_BYTES:
            raise ConfigurationError(f"{path} is larger than 10 MB")
        data = parse_yaml(decode_utf8(path.read_bytes(), source=printable(str(path))))
    except OSError as exc:
        raise ConfigurationError(f"cannot read {printable(str(path))}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        # Only the problem, not PyYAML's full text: that quotes the offending line,
        # which may be an account's password written in the file.
        problem = " ".join(
            str(p) for p in (getattr(exc, "context", None), getattr(exc, "problem", None)) if p
        )
        raise ConfigurationError(
            f"{path}{where}: not valid YAML ({problem or type(exc).__name__})"
        ) from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigurationError(f"{path}: the top level must be a mapping of sections")
    # "\ud800" and "\0" escapes parse to text no database or message can hold.
    return check_tree(data, field=f"{printable(str(path))}: "), path.parent


def _expand(value: Any, where: str) -> Any:
    if isinstance(value, str):

        def sub(match: re.Match[str]) -> str:
            name, default = match.group(1), match.group(2)
            if name in os.environ:
                # Undecodable bytes in the environment arrive as lone surrogates.
                return check_unicode(os.environ[name], field=f"{where}: ${{{name}}}")
            if default is not None:
                return default
            raise ConfigurationError(f"{where}: environment variable {name} is not set")

        return _ENV.sub(sub, value)
    if isinstance(value, dict):
        return {k: _expand(v, where) for k, v in value.items()}
    if isinstance(value, list):
        return [_expand(v, where) for v in value]
    return value


def _validate(model: type[BaseModel], entry: Any, where: str) -> Any:
    if not isinstance(entry, dict):
        raise ConfigurationError(f"{where}: expected a mapping of fields")
    try:
        return model.model_validate(entry)
    except ValidationError as exc:
        # Pydantic's "Value error, " prefix says nothing to the reader of a file.
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'record'}: "
            f"{str(err['msg']).removeprefix('Value error, ')}"
            for err in exc.errors(include_url=False, include_input=False)
        )
        raise ConfigurationError(f"{where}: {problems}") from None


def parse_records(data: dict[str, Any], base: Path) -> tuple[dict[str, list[Any]], list[str]]:
    """Validate every section; returns the records and warnings."""
    unknown = set(data) - set(SECTIONS)
    if unknown:
        raise ConfigurationError(
            f"unknown section(s) {', '.join(sorted(unknown))}; known: {', '.join(SECTIONS)}"
        )
    records: dict[str, list[Any]] = {s: [] for s in SECTIONS}
    warnings: list[str] = []
    models: dict[str, type[BaseModel]] = {
        "operators": Operator,
        "auth_profiles": AuthProfile,
        "keystores": Keystore,
        "accounts": EmailAccount,
        "correspondence": Correspondence,
        "case_types": CaseType,
        "webhooks": WebhookEndpoint,
    }
    for section, model in models.items():
        entries = data.get(section) or []
        if not isinstance(entries, list):
            raise ConfigurationError(f"{section} must be a list")
        for i, raw in enumerate(entries):
            name = (
                raw.get("name") or raw.get("id") or raw.get("class")
                if isinstance(raw, dict)
                else None
            )
            # The name as one line: a label, not a place for a typed line break to go.
            where = f"{section}[{i}]" + (f" ({single_line(str(name))})" if name else "")
            entry = dict(raw) if isinstance(raw, dict) else raw
            if section in _SECRETS and isinstance(entry, dict):
                key = _SECRETS[section]
                secret = entry.get(key)
                if isinstance(secret, str) and secret and not _ENV.fullmatch(secret):
                    warnings.append(
                        f"{where}: the {key} is written in the file; prefer ${{ENV_VAR}}"
                    )
                inbound = entry.get("inbound") if section == "accounts" else None
                secret = inbound.get("password") if isinstance(inbound, dict) else None
                if isinstance(secret, str) and secret and not _ENV.fullmatch(secret):
                    warnings.append(
                        f"{where}: the inbound password is written in the file; prefer ${{ENV_VAR}}"
                    )
                entry = _expand(entry, where)
                if section == "accounts":
                    read_file_field(entry, "truststore", base, where)
                    read_inbound_files(entry, base, where)
                    read_dkim_key(entry, base, where)
                    read_certificate_files(entry, base, where)
                if section == "keystores":
                    read_keystore_file(entry, base, where)
            elif section == "correspondence" and isinstance(entry, dict):
                read_file_field(entry, "html", base, where)
                read_file_field(entry, "text", base, where)
                read_images(entry, base, where)
            record = _validate(model, entry, where)
            if isinstance(record, Keystore):
                warnings.extend(f"{where}: {w}" for w in check_keystore(record))
            if isinstance(record, EmailAccount):
                warnings.extend(f"{where}: {w}" for w in record.warnings)
            records[section].append(record)
    return records, warnings


def apply_config(
    postroom: Postroom, source: Path | str | dict[str, Any], *, by: str = "apply"
) -> ApplyReport:
    """Validate everything, then upsert it all in one transaction (saved ``by`` someone)."""
    data, base = load_config(source)
    records, warnings = parse_records(data, base)
    return write_records(postroom, records, warnings=warnings, by=by)


def write_records(
    postroom: Postroom,
    records: dict[str, list[Any]],
    *,
    warnings: list[str] | None = None,
    create: bool = False,
    by: str = "apply",
    note: str | None = None,
) -> ApplyReport:
    """Check validated records against each other and the database, then upsert them.

    ``create``: every record must be new; else :class:`ExistsError` and nothing is written
    (checked in the writing transaction, so two creates racing cannot both succeed).
    """
    records = _checked_text({s: list(records.get(s, [])) for s in SECTIONS})
    report = ApplyReport(warnings=list(warnings or []))
    check_endpoints(records, postroom.settings.endpoint_hosts)
    check_webhooks(records["webhooks"], postroom.settings.endpoint_hosts)
    if warnings is None:  # records from the Python API: open their keystores here
        for keystore in records["keystores"]:
            report.warnings.extend(check_keystore(keystore))
    with postroom.engine.begin() as conn:
        for op in records["operators"]:
            report.changes.append(("operator", op.id, postroom.operator_store.put(conn, op)))
        changed_profiles = set()
        for profile in records["auth_profiles"]:
            change = postroom.profile_store.put(conn, profile)
            report.changes.append(("auth profile", profile.name, change))
            if change != "unchanged":
                changed_profiles.add(profile.name)
        for keystore in records["keystores"]:
            change = postroom.keystore_store.put(conn, keystore)
            report.changes.append(("keystore", keystore.name, change))
        keystores = {k.name: k for k in postroom.keystore_store.list(conn)}
        for account in records["accounts"]:
            report.warnings.extend(check_signing(account, keystores))
            report.warnings.extend(check_encryption(account))
        profiles = {p.name: p for p in postroom.profile_store.list(conn)}
        changed_accounts = set()
        for account in records["accounts"]:
            report.warnings.extend(check_profile(account, profiles))
            change = postroom.account_store.put(conn, account)
            report.changes.append(("account", account.name, change))
            if change != "unchanged":
                changed_accounts.add(account.name)
        report.warnings.extend(_lift_holds(postroom, conn, changed_accounts, changed_profiles))
        for c in records["correspondence"]:
            change = postroom.correspondence_store.put(conn, c, by=by, note=note)
            report.changes.append(("correspondence", c.name, change))
        known = postroom.correspondence_store.all(conn)
        renderer = Renderer(known, versions=postroom.correspondence_store.versions(conn))
        renderer.check()  # a ConfigurationError naming the field that does not compile
        check_content_ids(known)  # every cid: the HTML shows is one of its images
        operators = {o.id: o for o in postroom.operator_store.list(conn)}
        for ct in records["case_types"]:
            report.warnings.extend(check_steps(ct, known, renderer, operators))
            report.warnings.extend(undeclared_references(ct, known))
            report.changes.append(
                ("case type", ct.class_name, postroom.case_type_store.put(conn, ct))
            )
        report.changes.extend(put_webhooks(postroom.webhook_store, conn, records["webhooks"]))
        for op in records["operators"]:
            if op.reports_to and op.reports_to not in operators:
                report.warnings.append(
                    f"operator {op.id} reports to {op.reports_to}, who is not an operator"
                )
        existing = [
            f"{kind} {name}" for kind, name, change in report.changes if change != "created"
        ]
        if create and existing:
            raise ExistsError(f"{', '.join(existing)} exists already")
    return report


def _checked_text(records: dict[str, list[Any]]) -> dict[str, list[Any]]:
    """Records built in Python or typed in the Studio skip the file's check: check them."""
    for section, rows in records.items():
        for row in rows:
            name = next((v for v in map(row.__dict__.get, _NAMES) if v), "?")
            check_tree(row.model_dump(), field=f"{section} {name!r}: ")
    return records


def _lift_holds(
    postroom: Postroom, conn: Connection, accounts: set[str], profiles: set[str]
) -> list[str]:
    """Edited credentials deserve a try at once: lift the holds they concern."""
    notes = []
    for hold in postroom.hold_store.list(conn):
        account = postroom.account_store.get(conn, hold.account)
        if account.name in accounts or account.auth_profile in profiles:
            postroom.hold_store.lift(conn, account.name)
            released = postroom.outbox_store.release_held(conn, account.name)
            note = f"hold lifted, {released} held emails queued again"
            notes.append(f"account {account.name}: {note}")
    return notes
