#!/bin/sh
# Rates one email with curl: ./examples/phishing-rater/rate.sh [URL]
# With auth on, add: -H "Authorization: Bearer $STRATUS_KEY"
url="${1:-http://127.0.0.1:8080}"
curl -sS "$url/v1/functions/phishing-rater/invoke" \
  -H 'content-type: application/json' \
  -d '{"from":"it-support@examp1e.com","subject":"Your password expires today","body":"Keep it: https://examp1e.com/reset"}'
echo
