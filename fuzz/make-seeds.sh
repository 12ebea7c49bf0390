#!/usr/bin/env bash
# Fills fuzz/seeds/ with every YAML file of the repository's test data and examples.
set -euo pipefail
cd "$(dirname "$0")"
rm -rf seeds && mkdir seeds
find ../testdata ../examples -name '*.yaml' | while read -r f; do
  cp "$f" "seeds/$(echo "$f" | tr '/.' '__')"
done
ls seeds | wc -l
