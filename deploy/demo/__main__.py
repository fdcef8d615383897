"""`python -m deploy.demo`: post the demo to a running stack (`make demo` does it for you).

The stack is found as `make run` starts it: API_PORT (8080) and INGEST_PORT (8081) on
127.0.0.1, or API_URL and INGEST_URL; the admin token from ADMIN_TOKEN or `.local/admin_token`.
"""

from __future__ import annotations

import os
import sys

from deploy.demo import DEMO_DAY, dashboard_url, run_demo
from deploy.local.stack import LOCAL


def main() -> int:
    env = os.environ
    api = env.get("API_URL", f"http://127.0.0.1:{env.get('API_PORT', '8080')}")
    ingest = env.get("INGEST_URL", f"http://127.0.0.1:{env.get('INGEST_PORT', '8081')}")
    token = env.get("ADMIN_TOKEN") or (LOCAL / "admin_token").read_text().strip()
    run_demo(api, ingest, token)
    print(f"demo: the province on {DEMO_DAY}: {dashboard_url(api)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
