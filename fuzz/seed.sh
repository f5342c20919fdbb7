#!/usr/bin/env bash
# Seeds the fuzz corpora and dictionaries from the repository's test data:
#   corpus/decode: every CRIU 4.2 image in testdata/criu-4.2 (raw pages-*
#                  files left out), the saved crashers in testdata/fuzz,
#                  and for every magic in src/image/magic.rs a minimal image
#                  (header, magic, one empty entry);
#   corpus/encode: crit 4.2's JSON of those images, compact and pretty;
#   decode.dict:   the magics as little-endian words;
#   encode.dict:   the JSON keys and magic names seen in that JSON.
set -euo pipefail
cd "$(dirname "$0")"
root=..
mkdir -p corpus/decode corpus/encode
n=0
for f in "$root"/testdata/criu-4.2/*/*.img "$root"/testdata/criu-4.2/*/stats-dump; do
    case $(basename "$f") in pages-*) continue ;; esac
    d=$(basename "$(dirname "$f")")
    cp "$f" "corpus/decode/$d-$(basename "$f")"
    n=$((n + 1))
done
for f in "$root"/testdata/fuzz/*; do
    [ -f "$f" ] || continue
    case $f in *.json) cp "$f" corpus/encode/ ;; *) cp "$f" corpus/decode/ ;; esac
done
for f in "$root"/testdata/criu-4.2/*/crit-4.2/*.json; do
    d=$(basename "$(dirname "$(dirname "$f")")")
    cp "$f" "corpus/encode/$d-$(basename "$f")"
done

le() { # 0x5027_3030 -> \x30\x30\x27\x50
    local h=${1#0x}; h=${h//_/}
    printf '\\x%s\\x%s\\x%s\\x%s' "${h:6:2}" "${h:4:2}" "${h:2:2}" "${h:0:2}"
}
common=$(le 0x5456_4319)
service=$(le 0x5510_5940)
: > decode.dict
echo "common=\"$common\"" >> decode.dict
echo "service=\"$service\"" >> decode.dict
# Magic values: the 0x constants of the MAGICS table.
for v in $(sed -n '/static MAGICS/,/^];/p' "$root"/src/image/magic.rs | grep -o '0x[0-9a-fA-F_]\{9\}' | sort -u); do
    w=$(le "$v")
    echo "\"$w\"" >> decode.dict
    printf "$common$w\\x00\\x00\\x00\\x00" > "corpus/decode/min-${v}"
    printf "$w\\x00\\x00\\x00\\x00" > "corpus/decode/bare-${v}"
done

{
    cat "$root"/testdata/criu-4.2/*/crit-4.2/*.json |
        grep -o '"[A-Za-z_0-9 |.-]*"' | sort -u | head -n 2000
    printf '%s\n' '":"' '", "' '{"' '"}' '[]' '{}' 'true' 'false' 'null' '"0x' '-1' '1e5' '\\u0000' '\\ud800' '__unknown_fields__' '"extra"'
} | sed 's/\\/\\\\/g; s/"/\\"/g; s/.*/"&"/' > encode.dict

echo "seeded: $(ls corpus/decode | wc -l) images, $(ls corpus/encode | wc -l) JSON documents, $(wc -l < decode.dict)+$(wc -l < encode.dict) dictionary words ($n from testdata)"
