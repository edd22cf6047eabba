"""Test certificates for the relay link, made with the openssl command line.

    ca = make_ca(dir, "acme")                      # a cluster CA
    make_site_cert(ca, dir, "cloud")               # cloud.crt / cloud.key, CN = SAN = "cloud"
    make_site_cert(ca, dir, "old", expired=True)   # valid yesterday, not today
    install_site_tls(ca, cert, host_dir)           # tls/ca.crt, site.crt, site.key as
                                                   # harness.host_config() expects them

Keys are EC P-256 (fast to make and to handshake); key files are 0600, as
straitd's file checks require. Site certificates carry both serverAuth and
clientAuth, because each site is TLS server of one link and client of another.
"""

import os
import shutil
import subprocess
from dataclasses import dataclass


@dataclass
class Ca:
    name: str
    cert: str
    key: str


@dataclass
class SiteCert:
    site: str
    cert: str
    key: str
    ca: Ca


def _openssl(*args):
    res = subprocess.run(["openssl", *args], capture_output=True, text=True)
    if res.returncode != 0:
        raise RuntimeError(f"openssl {' '.join(args)} failed: {res.stderr.strip()}")
    return res.stdout


def _new_key(path):
    _openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256",
             "-out", path)
    os.chmod(path, 0o600)


def make_ca(directory, name, days=3650):
    """A self-signed CA called name: directory/name-ca.crt and .key."""
    os.makedirs(directory, exist_ok=True)
    key = os.path.join(directory, f"{name}-ca.key")
    cert = os.path.join(directory, f"{name}-ca.crt")
    _new_key(key)
    _openssl("req", "-new", "-x509", "-key", key, "-out", cert, "-days", str(days),
             "-subj", f"/CN={name} test CA",
             "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    return Ca(name, cert, key)


def make_site_cert(ca, directory, site, days=365, expired=False, file_name=None, dns=None):
    """A certificate for site signed by ca: CN and SAN DNS both the site name.

    dns: the SAN DNS names instead of [site] ([] for none: CN only).
    expired=True makes one whose validity ended yesterday (x509 -not_before /
    -not_after need OpenSSL 3.4, so the ca command with explicit dates is used)."""
    os.makedirs(directory, exist_ok=True)
    base = os.path.join(directory, file_name or site)
    key, csr, cert = base + ".key", base + ".csr", base + ".crt"
    ext = base + ".ext"
    _new_key(key)
    _openssl("req", "-new", "-key", key, "-out", csr, "-subj", f"/CN={site}")
    names = [site] if dns is None else list(dns)
    with open(ext, "w") as f:
        f.write("basicConstraints=critical,CA:FALSE\n"
                "keyUsage=critical,digitalSignature\n"
                "extendedKeyUsage=serverAuth,clientAuth\n")
        if names:
            f.write("subjectAltName=" + ",".join(f"DNS:{n}" for n in names) + "\n")
    if expired:
        _sign_with_dates(ca, csr, cert, ext, directory, "20200101000000Z",
                         _yesterday())
    else:
        _openssl("x509", "-req", "-in", csr, "-CA", ca.cert, "-CAkey", ca.key,
                 "-CAcreateserial", "-out", cert, "-days", str(days), "-extfile", ext)
    os.remove(csr)
    os.remove(ext)
    return SiteCert(site, cert, key, ca)


def _yesterday():
    import datetime
    t = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(days=1)
    return t.strftime("%Y%m%d%H%M%SZ")


def _ca_setup(directory, tag, counter, extra):
    """A throwaway `openssl ca` directory: an empty index, the counter file
    (serial or crlnumber) at 1000, and a config with extra lines. Returns
    (cadir, config path); the caller removes cadir."""
    cadir = os.path.join(directory, tag)
    os.makedirs(cadir, exist_ok=True)
    open(os.path.join(cadir, "index.txt"), "w").close()
    with open(os.path.join(cadir, counter), "w") as f:
        f.write("1000\n")
    conf = os.path.join(cadir, "ca.cnf")
    with open(conf, "w") as f:
        f.write(f"""[ca]
default_ca = test
[test]
dir = {cadir}
database = {cadir}/index.txt
{counter} = {cadir}/{counter}
default_md = sha256
""" + extra)
    return cadir, conf


def _sign_with_dates(ca, csr, cert, ext, directory, start, end):
    """Signs csr with explicit validity dates through a throwaway `openssl ca` setup."""
    cadir, conf = _ca_setup(directory, f".ca-{os.path.basename(cert)}", "serial",
                            "new_certs_dir = $dir\npolicy = any\nunique_subject = no\n"
                            "[any]\ncommonName = supplied\n")
    _openssl("ca", "-batch", "-config", conf, "-cert", ca.cert, "-keyfile", ca.key,
             "-in", csr, "-out", cert, "-startdate", start, "-enddate", end,
             "-extfile", ext, "-notext")
    shutil.rmtree(cadir, ignore_errors=True)


def install_site_tls(ca, site_cert, host_dir):
    """Copies CA and site certificate/key to host_dir/tls/{ca.crt,site.crt,site.key}."""
    tls = os.path.join(host_dir, "tls")
    os.makedirs(tls, exist_ok=True)
    shutil.copyfile(ca.cert, os.path.join(tls, "ca.crt"))
    shutil.copyfile(site_cert.cert, os.path.join(tls, "site.crt"))
    key = os.path.join(tls, "site.key")
    shutil.copyfile(site_cert.key, key)
    os.chmod(key, 0o600)
    return tls


def make_crl(ca, revoked, directory, name="ca.crl"):
    """A CRL signed by ca that revokes the SiteCerts in revoked (may be empty)."""
    cadir, conf = _ca_setup(directory, f".crl-{name}", "crlnumber", "default_crl_days = 30\n")
    for cert in revoked:
        _openssl("ca", "-batch", "-config", conf, "-cert", ca.cert, "-keyfile", ca.key,
                 "-revoke", cert.cert)
    out = os.path.join(directory, name)
    _openssl("ca", "-batch", "-config", conf, "-cert", ca.cert, "-keyfile", ca.key,
             "-gencrl", "-out", out)
    shutil.rmtree(cadir, ignore_errors=True)
    return out
