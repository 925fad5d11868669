"""TLS material for replication: a private site CA, server and client certificates, and their expiry.

Made with the openssl command line (present wherever MariaDB/MySQL is), called with argument lists.
Private keys are produced on openssl's stdout and written by this module into files created 0600
(no window with wider permissions, never passed on a command line, never returned or logged).
A file that exists is never overwritten: it is checked (signed by the CA, covers the wanted names,
not expired) and reported, or refused with a clear message.

Pure parts (argv builders, date parsing, expiry judgement, name matching) are unit-tested; the rest
runs openssl for real in the integration tests.
"""

import datetime
import ipaddress
import os
import re
import subprocess
import tempfile

KEY_BITS = 2048
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
HOST_NAME_RE = re.compile(rf"^(?=.{{1,253}}$)(?:\*\.)?{_LABEL}(?:\.{_LABEL})*$")


class TLSError(Exception):
    """Certificates could not be made or do not fit (bad input, mismatch, openssl failure)."""


# -- pure helpers ----------------------------------------------------------------------------
def split_names(names):
    """['db1.example.org', '10.0.0.1'] -> (['db1.example.org'], ['10.0.0.1']); refuses junk."""
    dns, ips = [], []
    for name in names or []:
        text = str(name).strip()
        try:
            ips.append(str(ipaddress.ip_address(text)))
            continue
        except ValueError:
            pass
        if not HOST_NAME_RE.match(text):
            raise TLSError(f"{text!r} is neither a host name nor an IP address")
        dns.append(text.lower())
    return dns, ips


def extensions_text(purpose, dns, ips):
    """The openssl extension section of a leaf certificate (server or client)."""
    usage = {"server": "serverAuth", "client": "clientAuth"}[purpose]
    lines = [
        "basicConstraints = critical, CA:FALSE",
        "keyUsage = critical, digitalSignature, keyEncipherment",
        f"extendedKeyUsage = {usage}",
        "subjectKeyIdentifier = hash",
        "authorityKeyIdentifier = keyid",
    ]
    alt = [f"DNS:{d}" for d in dns] + [f"IP:{i}" for i in ips]
    if alt:
        lines.append("subjectAltName = " + ", ".join(alt))
    return "\n".join(lines) + "\n"


def subject_of(common_name):
    cn = str(common_name or "").strip()
    if not cn or "/" in cn or "\n" in cn:
        raise TLSError(f"common name {common_name!r} must be non-empty without '/'")
    return f"/CN={cn}"


def parse_openssl_date(text):
    """'Dec  2 17:00:00 2036 GMT' (openssl -enddate) -> aware datetime (UTC)."""
    value = str(text).strip()
    if "=" in value:
        value = value.split("=", 1)[1].strip()
    value = re.sub(r"\s+", " ", value)
    try:
        parsed = datetime.datetime.strptime(value, "%b %d %H:%M:%S %Y GMT")
    except ValueError as exc:
        raise TLSError(f"cannot read the certificate date {text!r}") from exc
    return parsed.replace(tzinfo=datetime.timezone.utc)


def days_left(not_after, now=None):
    now = now or datetime.datetime.now(datetime.timezone.utc)
    return int((not_after - now).total_seconds() // 86400)


def expiry_report(certificates, warn_days, now=None):
    """[{name, not_after (datetime)}] -> (entries with days_left/expired/expiring, expired, expiring)."""
    entries, expired, expiring = [], [], []
    for cert in certificates:
        left = days_left(cert["not_after"], now)
        entry = dict(
            cert,
            not_after=cert["not_after"].strftime("%Y-%m-%dT%H:%M:%SZ"),
            days_left=left,
            expired=left < 0,
            expiring=0 <= left < int(warn_days),
        )
        entries.append(entry)
        if entry["expired"]:
            expired.append(cert["name"])
        elif entry["expiring"]:
            expiring.append(cert["name"])
    return entries, expired, expiring


def parse_san(text):
    """openssl -ext subjectAltName output -> (dns names, ips)."""
    dns = [d.lower() for d in re.findall(r"DNS:([^,\s]+)", text or "")]
    ips = [str(ipaddress.ip_address(i)) for i in re.findall(r"IP Address:([0-9A-Fa-f:.]+)", text or "")]
    return dns, ips


def missing_names(have_dns, have_ips, want_dns, want_ips):
    have = set(have_dns) | set(have_ips)
    return [n for n in list(want_dns) + list(want_ips) if n not in have]


# -- openssl ---------------------------------------------------------------------------------
def _openssl(args, stdin=None, binary="openssl"):
    try:
        proc = subprocess.run(
            [binary] + list(args), input=stdin, capture_output=True, check=False
        )
    except FileNotFoundError as exc:
        raise TLSError("openssl not found: install the openssl package") from exc
    if proc.returncode != 0:
        # stderr of these commands never holds key material (keys go to stdout only).
        raise TLSError(f"openssl {args[0]} failed: {proc.stderr.decode(errors='replace').strip()[-500:]}")
    return proc.stdout


def _write_private(path, data, mode=0o600):
    """Create ``path`` (must not exist) with ``mode`` from the start, and write ``data``."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


def new_key():
    return _openssl(["genpkey", "-algorithm", "RSA", "-pkeyopt", f"rsa_keygen_bits:{KEY_BITS}"])


def certificate_info(path):
    """{path, subject, issuer, not_after (datetime), dns, ips} of a PEM certificate file."""
    out = _openssl(
        ["x509", "-in", path, "-noout", "-subject", "-issuer", "-enddate", "-ext", "subjectAltName",
         "-nameopt", "RFC2253"]
    ).decode(errors="replace")
    info = dict(path=path, subject="", issuer="", not_after=None)
    for line in out.splitlines():
        if line.startswith("subject="):
            info["subject"] = line.split("=", 1)[1].strip()
        elif line.startswith("issuer="):
            info["issuer"] = line.split("=", 1)[1].strip()
        elif line.startswith("notAfter="):
            info["not_after"] = parse_openssl_date(line)
    info["dns"], info["ips"] = parse_san(out)
    if info["not_after"] is None:
        raise TLSError(f"{path}: no expiry date found (not a certificate?)")
    return info


def verify_chain(ca_cert, cert):
    try:
        _openssl(["verify", "-CAfile", ca_cert, cert])
    except TLSError as exc:
        raise TLSError(f"{cert} is not signed by the CA {ca_cert}: {exc}") from exc


def key_matches(cert, key):
    a = _openssl(["x509", "-in", cert, "-noout", "-pubkey"])
    b = _openssl(["pkey", "-in", key, "-pubout"])
    return a.strip() == b.strip()


def _chown(paths, owner, group):
    if owner is None and group is None:
        return
    import grp
    import pwd

    uid = pwd.getpwnam(owner).pw_uid if owner else -1
    gid = grp.getgrnam(group).gr_gid if group else -1
    for path in paths:
        os.chown(path, uid, gid)


# -- the entry point -------------------------------------------------------------------------
def ensure_certificates(params, check_mode=False):
    """Make (or check) the CA and one leaf certificate. Returns the module result.

    params: ca_cert, ca_key, ca_common_name, ca_days, cert, key, common_name, subject_alt_names,
    purpose (server|client), days, owner, group.
    """
    ca_cert, ca_key = params["ca_cert"], params.get("ca_key")
    cert, key = params.get("cert"), params.get("key")
    purpose = params.get("purpose") or "server"
    days = int(params.get("days") or 825)
    ca_days = int(params.get("ca_days") or 3650)
    if days <= 0 or ca_days <= 0:
        raise TLSError("days and ca_days must be > 0")
    if bool(cert) != bool(key):
        raise TLSError("cert and key go together")
    want_dns, want_ips = split_names(params.get("subject_alt_names") or [])
    if cert and purpose == "server" and not (want_dns or want_ips):
        raise TLSError("a server certificate needs subject_alt_names (the names the replica connects to)")
    common_name = params.get("common_name") or ((want_dns + want_ips)[0] if want_dns or want_ips else "")
    for path in [p for p in (ca_cert, ca_key, cert, key) if p]:
        if not os.path.isdir(os.path.dirname(os.path.abspath(path))):
            raise TLSError(f"directory of {path} does not exist")
    if cert:
        subject_of(common_name)
    subject_of(params.get("ca_common_name") or "replication CA")

    created = []
    make_ca = not os.path.exists(ca_cert)
    if make_ca and ca_key and os.path.exists(ca_key):
        raise TLSError(f"{ca_key} exists but {ca_cert} does not: refusing to overwrite or guess")
    if make_ca and not ca_key:
        raise TLSError(f"{ca_cert} does not exist and no ca_key was given to create the CA")
    make_leaf = bool(cert) and not os.path.exists(cert)
    if cert and make_leaf and os.path.exists(key):
        raise TLSError(f"{key} exists but {cert} does not: refusing to overwrite or guess")
    if cert and not make_leaf and not os.path.exists(key):
        raise TLSError(f"{cert} exists but its key {key} does not")
    if make_leaf and not make_ca and not (ca_key and os.path.exists(ca_key)):
        raise TLSError(f"creating {cert} needs the CA key (ca_key), which is not present")

    if not check_mode:
        work = tempfile.mkdtemp(prefix="mysql-tls.")
        try:
            if make_ca:
                _write_private(ca_key, new_key())
                created.append(ca_key)
                ca_subject = subject_of(params.get("ca_common_name") or "replication CA")
                pem = _openssl(
                    ["req", "-new", "-x509", "-key", ca_key, "-subj", ca_subject, "-days", str(ca_days),
                     "-sha256", "-addext", "basicConstraints=critical,CA:TRUE,pathlen:0",
                     "-addext", "keyUsage=critical,keyCertSign,cRLSign"]
                )
                _write_private(ca_cert, pem, 0o644)
                created.append(ca_cert)
            if make_leaf:
                _write_private(key, new_key())
                created.append(key)
                csr = _openssl(["req", "-new", "-key", key, "-subj", subject_of(common_name)])
                ext = os.path.join(work, "leaf.ext")
                with open(ext, "w") as f:
                    f.write(extensions_text(purpose, want_dns, want_ips))
                serial = "0x" + os.urandom(16).hex()
                pem = _openssl(
                    ["x509", "-req", "-CA", ca_cert, "-CAkey", ca_key, "-set_serial", serial,
                     "-days", str(days), "-sha256", "-extfile", ext],
                    stdin=csr,
                )
                _write_private(cert, pem, 0o644)
                created.append(cert)
            _chown([p for p in created if p in (cert, key)], params.get("owner"), params.get("group"))
        except BaseException:
            for path in created:  # half-made material is removed: only files this run created
                try:
                    os.unlink(path)
                except FileNotFoundError:
                    pass
            raise
        finally:
            for name in os.listdir(work):
                os.unlink(os.path.join(work, name))
            os.rmdir(work)

    would = [p for p, m in ((ca_key, make_ca), (ca_cert, make_ca), (key, make_leaf), (cert, make_leaf)) if m]
    result = dict(changed=bool(would), created=would if check_mode else created)
    infos = []
    if os.path.exists(ca_cert):
        infos.append(dict(certificate_info(ca_cert), name="ca"))
    if cert and os.path.exists(cert):
        verify_chain(ca_cert, cert)
        if not key_matches(cert, key):
            raise TLSError(f"{key} is not the key of {cert}")
        leaf = certificate_info(cert)
        missing = missing_names(leaf["dns"], leaf["ips"], want_dns, want_ips)
        if missing:
            raise TLSError(
                f"{cert} does not cover {', '.join(missing)} (it names "
                f"{', '.join(leaf['dns'] + leaf['ips']) or 'nothing'}): the replica's host name check "
                "would fail; give another path or remove the file"
            )
        infos.append(dict(leaf, name=purpose))
    entries, expired, expiring = expiry_report(infos, int(params.get("expiry_warning_days") or 30))
    result.update(certificates={e["name"]: e for e in entries}, expired=expired, expiring=expiring)
    return result
