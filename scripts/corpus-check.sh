#!/usr/bin/env bash
# Checks against the shared public corpora (../shared/corpora), which a
# fresh clone does not have: import of the SpamAssassin 2002 corpus stores
# all 3,250 messages and a second import adds nothing; classification of
# every corpus runs without a single crash.
set -euo pipefail
cd "$(dirname "$0")/.."
corpora=${LEADSIFT_CORPORA:-../shared/corpora}
[ -d "$corpora" ] || { echo "corpus-check: $corpora not found; nothing to check"; exit 0; }
profile=${PROFILE:-debug}
bin=target/$profile/leadsift
[ -x "$bin" ] || cargo build -p leadsift --bins $([ "$profile" = release ] && echo --release)

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
tar -xzf "$corpora/spamassassin-20021010/spamassassin-20021010.tar.gz" -C "$work"
db="sqlite://$work/corpus.db"

first=$("$bin" --db "$db" import --json "$work/easy_ham" "$work/hard_ham" "$work/spam" 2>/dev/null)
second=$("$bin" --db "$db" import --json "$work/easy_ham" "$work/hard_ham" "$work/spam" 2>/dev/null)
echo "first import:  $first"
echo "second import: $second"
python3 - "$first" "$second" <<'PY'
import json, sys
first, second = (json.loads(a) for a in sys.argv[1:3])
assert first["stored"] == 3250 and first["failed"] == 0, first
assert second["new"] == 0 and second["stored"] == 0 and second["duplicate"] == 3250, second
print("corpus-check: SpamAssassin import stored 3,250; re-import added 0")
PY

# Every archive classifies without crashing (errors are per-file lines, not aborts).
for archive in "$corpora"/*/*.tar.gz "$corpora"/*/*.mbox.gz; do
  [ -e "$archive" ] || continue
  lines=$("$bin" classify --json "$archive" 2>/dev/null | wc -l || true)
  echo "corpus-check: $(basename "$archive"): $lines lines"
done

# The shipped model on the fixed validation split: rules + model must stay
# within the false-positive budget and keep its recorded quality.
"$bin" eval --json "$corpora" 2>/dev/null > "$work/eval.json"
python3 - "$work/eval.json" <<'PY'
import json, sys
document = json.load(open(sys.argv[1]))
reports = {v["variant"]: v["report"] for v in document["variants"]}
for name, r in reports.items():
    spam = next(c for c in r["classes"] if c["class"] == "spam")
    print(f"corpus-check: eval {name}: {r['total']} validation messages, macro F1 {r['macro_f1']:.4f}, "
          f"spam F1 {spam['f1']:.4f}, ham→spam {r['ham_as_spam']}/{r['ham_total']} = {100 * r['ham_spam_fp_rate']:.3f}%")
combined = reports["rules + model"]
assert combined["ham_spam_fp_rate"] <= 0.0015, combined["ham_spam_fp_rate"]
assert combined["macro_f1"] >= 0.96, combined["macro_f1"]
assert combined["macro_f1"] > reports["rules only"]["macro_f1"], "the model must help"
spam = next(c for c in combined["classes"] if c["class"] == "spam")
assert spam["f1"] >= 0.92, spam
# Per corpus, what the shipped model reaches on the validation split (issue 3's bars, where
# reached: Enron's false-positive rate; see crates/leadsift-model/README.md for the rest).
floors = {"enron": (0.91, 0.0015), "spamassassin": (0.93, 0.004), "sms": (0.91, 0.0015),
          "telegram_ru": (0.93, 0.003)}
by_corpus = {c["corpus"]: c for c in combined["by_corpus"]}
for corpus, (f1, fp) in floors.items():
    c = by_corpus[corpus]
    print(f"corpus-check: {corpus}: spam F1 {c['spam_f1']:.4f} (floor {f1}), "
          f"ham→spam {c['ham_as_spam']}/{c['ham_total']} = {100 * c['ham_spam_fp_rate']:.3f}% (ceiling {100 * fp:.2f}%)")
    assert c["spam_f1"] >= f1, c
    assert c["ham_spam_fp_rate"] <= fp, c
PY

# The tests that need the corpora: every SpamAssassin message parses, the
# documented label mapping loads, and the built-in model still scores the
# validation split exactly as its metadata records (so a rules change that
# moves a verdict without a retrain is caught).
LEADSIFT_CORPORA="$(cd "$corpora" && pwd)" cargo test -q -p leadsift-model -p leadsift-formats \
  $([ "$profile" = release ] && echo --release) -- --ignored
echo "corpus-check: corpus tests passed"
