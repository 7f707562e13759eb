#!/usr/bin/env python3
"""Creates (or replaces) a SASL/SCRAM user on a broker reached over TLS that does not yet
require a login, with confluent-kafka's admin client (librdkafka: a Kafka client that shares no
code with frazil).

  scram_user.py --bootstrap 127.0.0.1:9093 --ca ca.pem --user frazil --password s3cret \
                --mechanism SCRAM-SHA-256
Exits 1 with a message on stderr on any failure."""

import argparse
import sys


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--bootstrap", required=True)
    p.add_argument("--ca", required=True)
    p.add_argument("--user", required=True)
    p.add_argument("--password", required=True)
    p.add_argument("--cert", default="", help="client certificate (PEM), when the broker asks for one")
    p.add_argument("--key", default="", help="its private key (PEM)")
    p.add_argument("--mechanism", default="SCRAM-SHA-256", choices=["SCRAM-SHA-256", "SCRAM-SHA-512"])
    args = p.parse_args(argv)
    try:
        from confluent_kafka.admin import AdminClient, ScramCredentialInfo, ScramMechanism, UserScramCredentialUpsertion

        conf = {
            "bootstrap.servers": args.bootstrap,
            "security.protocol": "SSL",
            "ssl.ca.location": args.ca,
        }
        if args.cert:
            conf.update({"ssl.certificate.location": args.cert, "ssl.key.location": args.key})
        admin = AdminClient(conf)
        mechanism = ScramMechanism.SCRAM_SHA_256 if args.mechanism == "SCRAM-SHA-256" else ScramMechanism.SCRAM_SHA_512
        upsert = UserScramCredentialUpsertion(args.user, ScramCredentialInfo(mechanism, 4096), args.password.encode())
        for user, future in admin.alter_user_scram_credentials([upsert], request_timeout=30).items():
            future.result()
        return 0
    except Exception as e:
        print("scram_user.py: %s: %s" % (type(e).__name__, e), file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
