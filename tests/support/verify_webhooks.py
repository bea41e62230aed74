"""Verifies webhook requests with the Standard Webhooks reference library (PyPI
`standardwebhooks`), not with the service's own code.

stdin: {"secret": "whsec_...", "requests": [{"body": "...", "headers": {...}}, ...]}
stdout: the JSON list of verified payloads. Exit status 1 (and the reason on stderr) when any
request fails verification.
"""

import json
import sys

from standardwebhooks.webhooks import Webhook, WebhookVerificationError


def main() -> int:
    job = json.load(sys.stdin)
    hook = Webhook(job["secret"])
    payloads = []
    for i, request in enumerate(job["requests"]):
        try:
            payloads.append(hook.verify(request["body"], request["headers"]))
        except WebhookVerificationError as e:
            print(f"request {i}: {e}", file=sys.stderr)
            return 1
    json.dump(payloads, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
