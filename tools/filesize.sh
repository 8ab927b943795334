#!/usr/bin/env bash
# Fails, naming each file, when a hand-written Go file in hub/, rtc/ or agent/ (tests included,
# files with a "Code generated ... DO NOT EDIT." line excepted) is longer than MAX_LINES (450):
# a file that long carries several concerns; split it by concern (docs/design.md, Files by concern).
# make vet runs it. Files git does not track yet are checked too.
set -euo pipefail
cd "$(dirname "$0")/.."
max=${MAX_LINES:-450}
bad=0
while IFS= read -r f; do
  [ -f "$f" ] || continue
  if grep -qE '^// Code generated .* DO NOT EDIT\.$' "$f"; then continue; fi
  n=$(wc -l < "$f")
  if [ "$n" -gt "$max" ]; then
    echo "$f: $n lines, more than $max: split it by concern"
    bad=1
  fi
done < <(git ls-files --cached --others --exclude-standard -- 'hub/*.go' 'rtc/*.go' 'agent/*.go' | sort -u)
exit $bad
