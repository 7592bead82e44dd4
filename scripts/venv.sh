# Sourced by demo.sh and test.sh: create .venv and install the pinned
# dependencies when missing or when pyproject/constraints changed.
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
. .venv/bin/activate
stamp=.venv/.kcg-installed
want=$(cat pyproject.toml constraints.txt | sha256sum | cut -c1-16)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  python -m pip install -q --upgrade pip
  python -m pip install -q -c constraints.txt -e ".[test]"
  echo "$want" > "$stamp"
fi
