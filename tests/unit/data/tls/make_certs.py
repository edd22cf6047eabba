#!/usr/bin/python3
"""Regenerates the certificates tests/unit/test_tls.c reads (run from anywhere).

    cluster-ca.crt/.key  the cluster CA
    other-ca.crt/.key    an unrelated CA
    cloud.*              CN = SAN DNS = "cloud"
    edge.*               CN = SAN DNS = "edge"
    cn-only.*            CN "onprem", no subjectAltName
    san-wins.*           CN "cloud", SAN DNS "other" (the SAN is what counts)
    two-names.*          CN "cloud", SAN DNS "cloud", "backup"
    wildcard.*           CN "wild", SAN DNS "*.example"
    expired.*            "cloud", validity ended in the past
    foreign.*            "cloud" signed by other-ca

Validity is 100 years, so the files stay usable; keys are EC P-256.
"""
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "..", "integration"))

import tlsutil  # noqa: E402

LONG = 36500


def main():
    ca = tlsutil.make_ca(HERE, "cluster", days=LONG)
    other = tlsutil.make_ca(HERE, "other", days=LONG)
    tlsutil.make_site_cert(ca, HERE, "cloud", days=LONG)
    tlsutil.make_site_cert(ca, HERE, "edge", days=LONG)
    tlsutil.make_site_cert(ca, HERE, "onprem", days=LONG, file_name="cn-only", dns=[])
    tlsutil.make_site_cert(ca, HERE, "cloud", days=LONG, file_name="san-wins", dns=["other"])
    tlsutil.make_site_cert(ca, HERE, "cloud", days=LONG, file_name="two-names",
                           dns=["cloud", "backup"])
    tlsutil.make_site_cert(ca, HERE, "wild", days=LONG, file_name="wildcard",
                           dns=["*.example"])
    tlsutil.make_site_cert(ca, HERE, "cloud", file_name="expired", expired=True)
    tlsutil.make_site_cert(other, HERE, "cloud", days=LONG, file_name="foreign")
    for name in os.listdir(HERE):
        if name.endswith(".srl"):
            os.remove(os.path.join(HERE, name))


if __name__ == "__main__":
    main()
