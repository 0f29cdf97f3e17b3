#!/usr/bin/env bash
# Rebuild tests/data/llm-logs-0.26.db: a logs.db in llm's legacy `responses` schema, written by
# the real llm 0.26 with the llm-echo 0.3 model plugin (a system prompt, a tool call and its
# result, a continued conversation).  Usage: bash tests/data/make_llm_logs.sh [VENV]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
venv=${1:-$work/venv}
if [ ! -x "$venv/bin/llm" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q "llm==0.26" "llm-echo==0.3"
fi
export LLM_USER_PATH="$work/home" LLM_LOAD_PLUGINS=llm-echo
mkdir -p "$LLM_USER_PATH"
"$venv/bin/llm" -m echo -s "You are terse." "hello there" >/dev/null
"$venv/bin/llm" -m echo --functions 'def add(a: int, b: int) -> int:
    return a + b
' '{"prompt": "add them", "tool_calls": [{"name": "add", "arguments": {"a": 1, "b": 2}}]}' >/dev/null
"$venv/bin/llm" -m echo -c "follow up" >/dev/null
cp "$LLM_USER_PATH/logs.db" "$here/llm-logs-0.26.db"
rm -rf "$work"
echo "wrote $here/llm-logs-0.26.db"
