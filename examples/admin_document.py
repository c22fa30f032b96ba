"""Example 'admin-document': see qkdnet.apps.examples. Starts two real KMEs on 127.0.0.1 (mutual TLS,
fresh PKI in a temporary directory), fills their shared link with key, and runs the transfer
through the ETSI 014 API of each side's own KME.

Run: PYTHONPATH=src python examples/admin_document.py [--json]
"""

from __future__ import annotations

import json
import sys

from qkdnet.apps.examples import EXAMPLES, run_example
from qkdnet.apps.localkms import LocalKMEPair


def main() -> int:
    example = EXAMPLES["admin-document"]
    with LocalKMEPair(1 << 20, master_sae="comune-sae", slave_sae="regione-sae") as kms:
        summary = run_example(
            "admin-document", kms.master_source(), kms.slave_source(), "comune-sae", "regione-sae"
        )
    if "--json" in sys.argv:
        print(json.dumps(summary))
        return 0
    print(f"{example.title}: {summary['from']} -> {summary['to']}")
    for part in summary["parts"]:
        print(
            f"  {part['name']:<24} {part['mode']:<8} {part['bytes']:>8} bytes  verified={part['verified']}"
            f"  keys={part['keys_used']} ({part['key_bits_used']} bits, "
            f"{part['key_bits_per_byte']:.3g} bits/byte)  rekeys={part['rekeys']}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
