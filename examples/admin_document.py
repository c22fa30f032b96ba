"""Example 'admin-document' (see qkdnet.apps.examples): two real KMEs on 127.0.0.1 with mutual TLS and a
fresh PKI, their shared link filled with key, and the transfer through each side's own KME.

Run: PYTHONPATH=src python examples/admin_document.py [--json]
"""

import sys

from qkdnet.apps.examples import run_script

if __name__ == "__main__":
    raise SystemExit(run_script("admin-document", sys.argv[1:]))
