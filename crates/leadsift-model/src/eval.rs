//! Masscheck-style evaluation: per-class precision/recall/F1, the confusion
//! matrix, the ham→spam false-positive rate, per-corpus figures and per-rule
//! hit counts with each rule's precision.
//!
//! "Ham" is every message whose label is not spam; a ham→spam false
//! positive is a ham message classified as spam. A rule *hits* a message
//! when it appears in the classification's reasons; the hit is *correct*
//! when the class it pushed towards equals the label (for a rule that only
//! took points away from classes: when the label is none of them). Model
//! reasons (`model:<name>`), `blacklist` and `allowlist` are counted like rules.

use std::collections::BTreeMap;
use std::fmt;

use leadsift_core::{Classification, Classifier, SenderStanding, Verdict};
use serde::{Deserialize, Serialize};

use crate::corpora::LabelledMessage;

/// Precision, recall and F1 of one class.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassFigures {
    pub class: Verdict,
    /// Messages labelled with this class.
    pub support: u64,
    /// Messages classified as this class.
    pub predicted: u64,
    pub correct: u64,
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
}

/// Figures for one corpus (the bars are per corpus family).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CorpusFigures {
    pub corpus: String,
    pub total: u64,
    pub accuracy: f64,
    pub spam_precision: f64,
    pub spam_recall: f64,
    pub spam_f1: f64,
    pub ham_total: u64,
    pub ham_as_spam: u64,
    pub ham_spam_fp_rate: f64,
}

/// The figures of one classifier over one labelled set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalSummary {
    pub total: u64,
    pub accuracy: f64,
    /// Unweighted mean F1 over the classes that occur in the labels.
    pub macro_f1: f64,
    pub classes: Vec<ClassFigures>,
    /// `confusion[label][predicted]`, both in [`Verdict::ALL`] order.
    pub confusion: Vec<Vec<u64>>,
    pub ham_total: u64,
    pub ham_as_spam: u64,
    pub ham_spam_fp_rate: f64,
    /// Junk (any non-inquiry label) classified as inquiry: harmless but costs a manager's time.
    pub junk_as_inquiry: u64,
    /// Inquiries classified as any junk class: the expensive mistake.
    pub inquiry_as_junk: u64,
    pub by_corpus: Vec<CorpusFigures>,
}

impl EvalSummary {
    pub fn class(&self, class: Verdict) -> Option<&ClassFigures> {
        self.classes.iter().find(|c| c.class == class)
    }

    pub fn spam_f1(&self) -> f64 {
        self.class(Verdict::Spam).map_or(0.0, |c| c.f1)
    }
}

/// How often one rule fired and how often it was right.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RuleFigures {
    pub rule: String,
    /// The class it pushed towards most often.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub class: Option<Verdict>,
    pub hits: u64,
    pub correct: u64,
    pub precision: f64,
}

/// The full report of `leadsift eval`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalReport {
    #[serde(flatten)]
    pub summary: EvalSummary,
    pub rules: Vec<RuleFigures>,
}

/// Validation figures of a model: the classifier variants on the fixed validation split.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ValidationFigures {
    pub rules_only: EvalSummary,
    pub model_only: EvalSummary,
    pub combined: EvalSummary,
}

#[derive(Debug, Clone, Copy, Default)]
struct Tally {
    confusion: [[u64; 5]; 5],
}

impl Tally {
    fn add(&mut self, label: Verdict, predicted: Verdict) {
        self.confusion[label.index()][predicted.index()] += 1;
    }

    fn total(&self) -> u64 {
        self.confusion.iter().flatten().sum()
    }

    fn class(&self, class: Verdict) -> ClassFigures {
        let i = class.index();
        let support: u64 = self.confusion[i].iter().sum();
        let predicted: u64 = self.confusion.iter().map(|row| row[i]).sum();
        let correct = self.confusion[i][i];
        let precision = ratio(correct, predicted);
        let recall = ratio(correct, support);
        let f1 = if precision + recall > 0.0 { 2.0 * precision * recall / (precision + recall) } else { 0.0 };
        ClassFigures { class, support, predicted, correct, precision, recall, f1 }
    }

    fn ham(&self) -> (u64, u64) {
        let spam = Verdict::Spam.index();
        let ham_rows = self.confusion.iter().enumerate().filter(|(label, _)| *label != spam);
        ham_rows.fold((0, 0), |(total, as_spam), (_, row)| (total + row.iter().sum::<u64>(), as_spam + row[spam]))
    }

    fn corpus(&self, corpus: &str) -> CorpusFigures {
        let spam = self.class(Verdict::Spam);
        let (ham_total, ham_as_spam) = self.ham();
        let total = self.total();
        let correct: u64 = (0..5).map(|i| self.confusion[i][i]).sum();
        CorpusFigures {
            corpus: corpus.to_owned(),
            total,
            accuracy: ratio(correct, total),
            spam_precision: spam.precision,
            spam_recall: spam.recall,
            spam_f1: spam.f1,
            ham_total,
            ham_as_spam,
            ham_spam_fp_rate: ratio(ham_as_spam, ham_total),
        }
    }
}

fn ratio(numerator: u64, denominator: u64) -> f64 {
    if denominator == 0 { 0.0 } else { numerator as f64 / denominator as f64 }
}

/// Accumulates classifications of labelled messages into a report.
#[derive(Debug, Default)]
pub struct Evaluator {
    overall: Tally,
    by_corpus: BTreeMap<String, Tally>,
    rules: BTreeMap<String, RuleTally>,
}

#[derive(Debug, Default)]
struct RuleTally {
    hits: u64,
    correct: u64,
    towards: [u64; 5],
}

impl Evaluator {
    pub fn new() -> Self {
        Self::default()
    }

    /// Records one classified message of `corpus` whose true class is `label`.
    pub fn add(&mut self, corpus: &str, label: Verdict, classification: &Classification) {
        self.add_verdict(corpus, label, classification.verdict);
        let mut per_rule: BTreeMap<&str, (Vec<Verdict>, Vec<Verdict>)> = BTreeMap::new();
        for reason in &classification.reasons {
            let entry = per_rule.entry(reason.rule.as_str()).or_default();
            match reason.class {
                Some(class) if reason.decisive || reason.score > 0.0 => entry.0.push(class),
                Some(class) if reason.score < 0.0 => entry.1.push(class),
                _ => {}
            }
        }
        for (rule, (towards, away)) in per_rule {
            let tally = self.rules.entry(rule.to_owned()).or_default();
            tally.hits += 1;
            let correct = if towards.is_empty() { !away.contains(&label) } else { towards.contains(&label) };
            tally.correct += u64::from(correct);
            for class in towards {
                tally.towards[class.index()] += 1;
            }
        }
    }

    /// Records a verdict without reasons.
    pub fn add_verdict(&mut self, corpus: &str, label: Verdict, predicted: Verdict) {
        self.overall.add(label, predicted);
        if let Some(tally) = self.by_corpus.get_mut(corpus) {
            tally.add(label, predicted);
        } else {
            let mut tally = Tally::default();
            tally.add(label, predicted);
            self.by_corpus.insert(corpus.to_owned(), tally);
        }
    }

    pub fn summary(&self) -> EvalSummary {
        let t = &self.overall;
        let classes: Vec<ClassFigures> = Verdict::ALL.into_iter().map(|c| t.class(c)).collect();
        let present: Vec<&ClassFigures> = classes.iter().filter(|c| c.support > 0).collect();
        let macro_f1 =
            if present.is_empty() { 0.0 } else { present.iter().map(|c| c.f1).sum::<f64>() / present.len() as f64 };
        let total = t.total();
        let correct: u64 = (0..5).map(|i| t.confusion[i][i]).sum();
        let (ham_total, ham_as_spam) = t.ham();
        let inquiry = Verdict::Inquiry.index();
        let junk_as_inquiry = (0..5).filter(|&i| i != inquiry).map(|i| t.confusion[i][inquiry]).sum();
        let inquiry_as_junk = (0..5).filter(|&i| i != inquiry).map(|i| t.confusion[inquiry][i]).sum();
        EvalSummary {
            total,
            accuracy: ratio(correct, total),
            macro_f1,
            classes,
            confusion: t.confusion.iter().map(|row| row.to_vec()).collect(),
            ham_total,
            ham_as_spam,
            ham_spam_fp_rate: ratio(ham_as_spam, ham_total),
            junk_as_inquiry,
            inquiry_as_junk,
            by_corpus: self.by_corpus.iter().map(|(name, tally)| tally.corpus(name)).collect(),
        }
    }

    pub fn report(&self) -> EvalReport {
        let mut rules: Vec<RuleFigures> = self
            .rules
            .iter()
            .map(|(rule, tally)| {
                let class = (0..5)
                    .filter(|&i| tally.towards[i] > 0)
                    .max_by_key(|&i| (tally.towards[i], std::cmp::Reverse(i)))
                    .map(|i| Verdict::ALL[i]);
                RuleFigures {
                    rule: rule.clone(),
                    class,
                    hits: tally.hits,
                    correct: tally.correct,
                    precision: ratio(tally.correct, tally.hits),
                }
            })
            .collect();
        rules.sort_by(|a, b| b.hits.cmp(&a.hits).then_with(|| a.rule.cmp(&b.rule)));
        EvalReport { summary: self.summary(), rules }
    }
}

/// Classifies every labelled message (default list standing) and reports.
pub fn evaluate<'a>(
    classifier: &dyn Classifier,
    examples: impl IntoIterator<Item = &'a LabelledMessage>,
    progress: &mut dyn FnMut(usize),
) -> EvalReport {
    let standing = SenderStanding::default();
    let mut evaluator = Evaluator::new();
    for (done, example) in examples.into_iter().enumerate() {
        let classification = classifier.classify(&example.message, &standing);
        evaluator.add(&example.corpus, example.class, &classification);
        progress(done + 1);
    }
    evaluator.report()
}

impl fmt::Display for EvalSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{} messages, accuracy {:.4}, macro F1 {:.4}", self.total, self.accuracy, self.macro_f1)?;
        writeln!(
            f,
            "ham→spam false positives: {} of {} = {:.3}%   inquiry→junk: {}   junk→inquiry: {}",
            self.ham_as_spam,
            self.ham_total,
            100.0 * self.ham_spam_fp_rate,
            self.inquiry_as_junk,
            self.junk_as_inquiry
        )?;
        writeln!(f)?;
        writeln!(
            f,
            "{:<15} {:>8} {:>9} {:>9} {:>7} {:>7}",
            "class", "support", "predicted", "precision", "recall", "F1"
        )?;
        for c in &self.classes {
            writeln!(
                f,
                "{:<15} {:>8} {:>9} {:>9.4} {:>7.4} {:>7.4}",
                c.class.as_str(),
                c.support,
                c.predicted,
                c.precision,
                c.recall,
                c.f1
            )?;
        }
        writeln!(f)?;
        write!(f, "{:<15}", "label \\ verdict")?;
        for class in Verdict::ALL {
            write!(f, " {:>14}", class.as_str())?;
        }
        writeln!(f)?;
        for (class, row) in Verdict::ALL.into_iter().zip(&self.confusion) {
            write!(f, "{:<15}", class.as_str())?;
            for count in row {
                write!(f, " {count:>14}")?;
            }
            writeln!(f)?;
        }
        if !self.by_corpus.is_empty() {
            writeln!(f)?;
            writeln!(
                f,
                "{:<20} {:>7} {:>9} {:>9} {:>7} {:>7} {:>12}",
                "corpus", "total", "accuracy", "spam P", "spam R", "spam F1", "ham→spam FP"
            )?;
            for c in &self.by_corpus {
                writeln!(
                    f,
                    "{:<20} {:>7} {:>9.4} {:>9.4} {:>7.4} {:>7.4} {:>5}={:>5.2}%",
                    c.corpus,
                    c.total,
                    c.accuracy,
                    c.spam_precision,
                    c.spam_recall,
                    c.spam_f1,
                    c.ham_as_spam,
                    100.0 * c.ham_spam_fp_rate
                )?;
            }
        }
        Ok(())
    }
}

impl fmt::Display for EvalReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.summary)?;
        if !self.rules.is_empty() {
            writeln!(f)?;
            writeln!(f, "{:<40} {:<15} {:>7} {:>7} {:>9}", "rule", "towards", "hits", "correct", "precision")?;
            for r in &self.rules {
                writeln!(
                    f,
                    "{:<40} {:<15} {:>7} {:>7} {:>9.4}",
                    r.rule,
                    r.class.map_or("-", Verdict::as_str),
                    r.hits,
                    r.correct,
                    r.precision
                )?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use leadsift_core::{Reason, ReasonOrigin};

    fn classification(verdict: Verdict, reasons: &[(&str, Verdict, f64)]) -> Classification {
        Classification {
            verdict,
            confidence: 0.9,
            reasons: reasons
                .iter()
                .map(|(rule, class, score)| Reason {
                    rule: (*rule).into(),
                    description: String::new(),
                    origin: ReasonOrigin::Rule,
                    class: Some(*class),
                    score: *score,
                    decisive: false,
                })
                .collect(),
        }
    }

    #[test]
    fn metrics_match_a_hand_computed_confusion_matrix() {
        // labels → verdicts: 3 spam (2 caught, 1 missed), 4 inquiries (1 called spam), 1 newsletter caught.
        let mut e = Evaluator::new();
        for (label, verdict) in [
            (Verdict::Spam, Verdict::Spam),
            (Verdict::Spam, Verdict::Spam),
            (Verdict::Spam, Verdict::Inquiry),
            (Verdict::Inquiry, Verdict::Inquiry),
            (Verdict::Inquiry, Verdict::Inquiry),
            (Verdict::Inquiry, Verdict::Inquiry),
            (Verdict::Inquiry, Verdict::Spam),
            (Verdict::Newsletter, Verdict::Newsletter),
        ] {
            e.add("c", label, &classification(verdict, &[("SPAMMY", Verdict::Spam, 2.0)]));
        }
        let s = e.summary();
        let spam = s.class(Verdict::Spam).cloned().unwrap_or_else(|| panic!("no spam figures"));
        // spam: TP 2, FP 1, FN 1 → P = R = F1 = 2/3.
        assert!((spam.precision - 2.0 / 3.0).abs() < 1e-12);
        assert!((spam.recall - 2.0 / 3.0).abs() < 1e-12);
        assert!((spam.f1 - 2.0 / 3.0).abs() < 1e-12);
        let inquiry = s.class(Verdict::Inquiry).cloned().unwrap_or_else(|| panic!("no inquiry figures"));
        // inquiry: TP 3, predicted 4, support 4 → P = R = 0.75.
        assert!((inquiry.precision - 0.75).abs() < 1e-12 && (inquiry.recall - 0.75).abs() < 1e-12);
        // ham = 5 (4 inquiries + 1 newsletter), 1 of them called spam.
        assert_eq!((s.ham_total, s.ham_as_spam), (5, 1));
        assert!((s.ham_spam_fp_rate - 0.2).abs() < 1e-12);
        assert_eq!(s.confusion[Verdict::Inquiry.index()][Verdict::Spam.index()], 1);
        assert!((s.accuracy - 6.0 / 8.0).abs() < 1e-12);
        assert_eq!((s.inquiry_as_junk, s.junk_as_inquiry), (1, 1));
        // macro F1 over the three classes present: (2/3 + 3/4 + 1) / 3.
        assert!((s.macro_f1 - (2.0 / 3.0 + 0.75 + 1.0) / 3.0).abs() < 1e-12);

        let report = e.report();
        let rule = &report.rules[0];
        assert_eq!((rule.rule.as_str(), rule.hits, rule.correct, rule.class), ("SPAMMY", 8, 3, Some(Verdict::Spam)));
        let text = report.to_string();
        assert!(text.contains("ham→spam false positives: 1 of 5 = 20.000%"), "{text}");
        let json = serde_json::to_value(&report).unwrap_or_default();
        assert_eq!(json["ham_as_spam"], 1);
    }

    #[test]
    fn negative_only_rules_are_right_when_the_label_is_another_class() {
        let mut e = Evaluator::new();
        e.add("c", Verdict::Inquiry, &classification(Verdict::Inquiry, &[("REAL_REQUEST", Verdict::Spam, -2.0)]));
        e.add("c", Verdict::Spam, &classification(Verdict::Inquiry, &[("REAL_REQUEST", Verdict::Spam, -2.0)]));
        let rule = &e.report().rules[0];
        assert_eq!((rule.hits, rule.correct, rule.class), (2, 1, None));
    }
}
