#!/usr/bin/env bash
# Runs shellcheck over every shell script in the repository: tracked files that start with a sh or bash
# "#!" line (scripts/, .ci/run, the Slurm batch scripts, the fuzzing build). Installs shellcheck
# (apt) when it is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v shellcheck > /dev/null; then
    sudo=""
    if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends shellcheck > /dev/null
fi
scripts=()
while IFS= read -r -d '' file; do
    if head -n 1 "$file" | grep -Eq '^#!.*(/|env )(ba)?sh'; then scripts+=("$file"); fi
done < <(git ls-files -z)
[ "${#scripts[@]}" -gt 0 ] || { echo "shellcheck: no shell scripts found" >&2; exit 1; }
shellcheck "${scripts[@]}"
echo "shellcheck: ${#scripts[@]} scripts clean" >&2
