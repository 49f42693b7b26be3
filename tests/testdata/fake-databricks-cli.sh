#!/bin/sh
# A stand-in for the Databricks CLI's `databricks auth token --host H`, for tests. The tests copy it and pad the
# copy past 1 MiB (the SDK takes a smaller `databricks` for the legacy CLI and passes it over).
#   FAKE_CLI_TOKEN    the access token to print (default: fake-cli-access-token)
#   FAKE_CLI_EXPIRY   the expiry to print (default: far in the future)
#   FAKE_CLI_FAIL     when set, fail the way the CLI does for a host without a login
#   FAKE_CLI_LOG      when set, append the arguments to this file, one call a line
if [ -n "$FAKE_CLI_LOG" ]; then
  echo "$*" >> "$FAKE_CLI_LOG"
fi
if [ "$1" != "auth" ] || [ "$2" != "token" ]; then
  echo "Error: unknown command \"$1 $2\" for \"databricks\"" >&2
  exit 1
fi
if [ -n "$FAKE_CLI_FAIL" ]; then
  echo "Error: cannot get access token: default auth: databricks-cli: cannot find a login for $4. Run 'databricks auth login --host $4'" >&2
  exit 1
fi
printf '{\n  "access_token": "%s",\n  "token_type": "Bearer",\n  "expiry": "%s"\n}\n' \
  "${FAKE_CLI_TOKEN:-fake-cli-access-token}" "${FAKE_CLI_EXPIRY:-2999-01-01T00:00:00.000000+00:00}"
exit 0
