//! The measured recall and false-positive rate of the detectors, on the corpus in
//! `tests/data/secrets/` (written by `tests/data/secrets/make_corpus.py` from providers'
//! documented token formats):
//!
//! * `secrets.jsonl`: one secret or piece of personal data a line, `{"kind", "text",
//!   "secret"}`; found when the findings of [`scan_with`] (personal data included) cover
//!   every byte of `secret` in `text`.
//! * `clean.jsonl`: ordinary developer sentences, `{"text"}`; a false positive when
//!   anything in the sentence is found.
//!
//! `cargo test --no-default-features --features bundled --lib redact::corpus -- --nocapture`
//! prints both numbers (README "Secrets and personal data"); the timing of one 1 KB
//! sentence is `... redact::corpus::timing -- --ignored --nocapture`.

use std::collections::BTreeSet;
use std::path::PathBuf;

use super::{KINDS, SECRET_FIELD, scan, scan_with};

fn data(file: &str) -> Vec<serde_json::Value> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/secrets")
        .join(file);
    let raw = std::fs::read_to_string(&path).unwrap_or_default();
    raw.lines()
        .filter(|l| !l.trim().is_empty())
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

fn field<'a>(v: &'a serde_json::Value, key: &str) -> &'a str {
    v[key].as_str().unwrap_or_default()
}

/// Whether the findings in `text` cover every byte of its first `secret`.
fn covered(text: &str, secret: &str) -> bool {
    let Some(start) = text.find(secret) else {
        return false;
    };
    let end = start + secret.len();
    let mut pos = start;
    for f in scan_with(text, true) {
        if f.start <= pos && f.end > pos {
            pos = f.end;
        }
    }
    pos >= end
}

/// The kinds of [`KINDS`] found at least once in the secrets corpus.
pub(super) fn kinds_found() -> BTreeSet<&'static str> {
    data("secrets.jsonl")
        .iter()
        .flat_map(|row| scan(field(row, "text")))
        .map(|f| f.kind)
        .collect()
}

#[test]
fn corpus_recall_and_false_positives() {
    let secrets = data("secrets.jsonl");
    let clean = data("clean.jsonl");
    let kinds: BTreeSet<&str> = secrets.iter().map(|r| field(r, "kind")).collect();
    assert!(
        secrets.len() >= 150 && kinds.len() >= 60,
        "corpus too small: {} secrets of {} kinds",
        secrets.len(),
        kinds.len()
    );
    assert!(clean.len() >= 500, "{} clean sentences", clean.len());

    let missed: Vec<(&str, &str)> = secrets
        .iter()
        .filter(|r| !covered(field(r, "text"), field(r, "secret")))
        .map(|r| (field(r, "kind"), field(r, "text")))
        .collect();
    let touched: Vec<(&str, Vec<(&str, &str)>)> = clean
        .iter()
        .map(|r| field(r, "text"))
        .filter_map(|t| {
            let f = scan_with(t, true);
            (!f.is_empty()).then(|| (t, f.iter().map(|f| (f.kind, &t[f.start..f.end])).collect()))
        })
        .collect();
    let recall = 1.0 - missed.len() as f64 / secrets.len() as f64;
    let fp_rate = touched.len() as f64 / clean.len() as f64;
    println!(
        "recall {recall:.3} ({} of {} secrets of {} kinds), false positives {:.2}% ({} of {} sentences)",
        secrets.len() - missed.len(),
        secrets.len(),
        kinds.len(),
        fp_rate * 100.0,
        touched.len(),
        clean.len()
    );
    for (kind, text) in &missed {
        println!("missed {kind}: {text:?}");
    }
    for (text, f) in &touched {
        println!("false positive {f:?} in {text:?}");
    }
    assert!(recall >= 0.95, "recall {recall:.3} < 0.95");
    assert!(fp_rate <= 0.01, "false positives {fp_rate:.4} > 0.01");
}

#[test]
fn every_kind_is_found_in_the_corpus_or_a_unit_test() {
    let found = kinds_found();
    let untested: Vec<&&str> = KINDS
        .iter()
        .filter(|k| {
            **k != SECRET_FIELD && !found.contains(**k) && !super::tests::TESTED_KINDS.contains(k)
        })
        .collect();
    assert!(untested.is_empty(), "kinds never found: {untested:?}");
}

/// Scan time of a 1 KB text of ordinary sentences (the common case: nothing found) and
/// of one holding secrets and personal data, in ns per call. Not timed in CI.
#[test]
#[ignore]
fn timing() {
    let clean: Vec<String> = data("clean.jsonl")
        .iter()
        .map(|r| field(r, "text").to_string())
        .collect();
    let secrets: Vec<String> = data("secrets.jsonl")
        .iter()
        .map(|r| field(r, "text").to_string())
        .collect();
    let kb = |rows: &[String]| {
        let mut s = String::new();
        for r in rows.iter().cycle() {
            if s.len() >= 1024 {
                break;
            }
            s.push_str(r);
            s.push(' ');
        }
        let cut = (0..=1024)
            .rev()
            .find(|&i| s.is_char_boundary(i))
            .unwrap_or(0);
        s.truncate(cut);
        s
    };
    let plain = kb(&clean[..40]);
    let dirty = kb(&secrets[..12]);
    for (label, text) in [("clean 1 KB", &plain), ("1 KB with secrets", &dirty)] {
        for (mode, pii) in [("secrets", false), ("secrets+pii", true)] {
            let n = 2000;
            // Warm up: compile the detectors and fill the regex caches first.
            for _ in 0..20 {
                std::hint::black_box(scan_with(text, pii));
            }
            let t0 = std::time::Instant::now();
            let mut found = 0;
            for _ in 0..n {
                found += std::hint::black_box(scan_with(std::hint::black_box(text), pii)).len();
            }
            let ns = t0.elapsed().as_nanos() as f64 / n as f64;
            println!("{label}, {mode}: {ns:.0} ns/scan ({} findings)", found / n);
        }
    }
}

/// Where the scan time of a clean 1 KB text goes: the prefilter pass, and each detector's
/// own pass (the slowest ten). Not timed in CI.
#[test]
#[ignore]
fn timing_by_detector() {
    let clean: Vec<String> = data("clean.jsonl")
        .iter()
        .map(|r| field(r, "text").to_string())
        .collect();
    let mut text = String::new();
    for r in clean.iter().take(40).cycle() {
        if text.len() >= 1024 {
            break;
        }
        text.push_str(r);
        text.push(' ');
    }
    let n = 500;
    let t = |f: &dyn Fn() -> usize| {
        for _ in 0..20 {
            std::hint::black_box(f());
        }
        let t0 = std::time::Instant::now();
        let mut x = 0;
        for _ in 0..n {
            x += std::hint::black_box(f());
        }
        std::hint::black_box(x);
        t0.elapsed().as_nanos() as f64 / n as f64
    };
    if let Some(set) = super::PREFILTER.as_ref() {
        let m = set.matches(&text);
        println!(
            "prefilter: {:.0} ns, {} detectors match",
            t(&|| set.matches(&text).iter().count()),
            m.iter().count()
        );
    }
    let mut per: Vec<(f64, &str)> = super::DETECTORS
        .iter()
        .map(|d| (t(&|| d.re.find_iter(&text).count()), d.kind))
        .collect();
    println!(
        "scan_with(secrets): {:.0} ns, scan_with(secrets+pii): {:.0} ns",
        t(&|| scan_with(&text, false).len()),
        t(&|| scan_with(&text, true).len())
    );
    for (kind, re) in super::pii::regexes() {
        println!(
            "pii {kind}: {:.0} ns",
            t(&|| re.captures_iter(&text).count())
        );
    }
    let total: f64 = per.iter().map(|p| p.0).sum();
    per.sort_by(|a, b| b.0.total_cmp(&a.0));
    println!(
        "all detectors one by one: {total:.0} ns; slowest: {:?}",
        &per[..10]
    );
}
