//! `leadsift train` and `leadsift eval` on a labelled corpus made by the test
//! (folders named after the classes), through the real binary.

use std::path::Path;

use leadsift_integration_tests::leadsift_command;
use serde_json::Value;

fn write_mail(dir: &Path, name: &str, from: &str, subject: &str, body: &str) {
    std::fs::create_dir_all(dir).unwrap();
    let mail = format!(
        "From: {from}\r\nTo: sales@our.example\r\nSubject: {subject}\r\nMessage-ID: <{name}@test>\r\n\
         Date: Fri, 20 Nov 2026 10:00:00 +0300\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{body}\r\n"
    );
    std::fs::write(dir.join(format!("{name}.eml")), mail).unwrap();
}

fn labelled_corpus(root: &Path) {
    let spam = [
        "Cheap watches and pills, best prices, click now",
        "You won a lottery prize, claim your cash today",
        "Earn money from home, no investment, guaranteed income",
        "Заработок без вложений, пассивный доход каждый день",
        "Казино бонус за регистрацию, выигрыш гарантирован",
    ];
    let inquiry = [
        "Hello, could you send a quote for 40 facade panels with delivery to Kazan?",
        "Good afternoon, what is the lead time for your steel doors, we need 12 pieces",
        "Здравствуйте, сколько стоит монтаж вентилируемого фасада на 300 м2?",
        "Добрый день, пришлите коммерческое предложение на поставку кирпича",
        "Hi, is the model X200 in stock? We would like to order next week",
    ];
    for round in 0..6 {
        for (i, text) in spam.iter().enumerate() {
            let body = format!("{text} (offer {round}{i})");
            write_mail(&root.join("spam"), &format!("s{round}{i}"), "promo@bulk.example", "Offer", &body);
        }
        for (i, text) in inquiry.iter().enumerate() {
            let body = format!("{text} Order ref {round}{i}.");
            let from = format!("client{round}{i}@firm.example");
            write_mail(&root.join("inquiry"), &format!("i{round}{i}"), &from, "Question", &body);
        }
    }
}

#[test]
fn train_is_reproducible_and_eval_reports_every_figure() {
    let dir = tempfile::tempdir().unwrap();
    let corpus = dir.path().join("mycorpus");
    labelled_corpus(&corpus);
    let train = |out: &Path| {
        let output =
            leadsift_command().args(["train", "--name", "test", "--out"]).arg(out).arg(&corpus).output().unwrap();
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    let first = dir.path().join("models/one");
    let report = train(&first);
    assert!(report.contains("rules + model"), "{report}");
    let again = dir.path().join("models/two");
    train(&again);
    // Reproducible: the same corpus gives the same model file, byte for byte.
    let one = std::fs::read(first.join("model.json.gz")).unwrap();
    let metadata: Value = serde_json::from_slice(&std::fs::read(first.join("metadata.json")).unwrap()).unwrap();
    assert_eq!(metadata["corpora"][0]["per_class"]["spam"], 30, "{metadata}");
    assert_eq!(metadata["corpora"][0]["per_class"]["inquiry"], 30, "{metadata}");
    assert!(metadata["validation"]["combined"]["macro_f1"].is_number(), "validation figures recorded");
    assert_eq!(metadata["features"]["dimension_bits"], 17);
    let two = std::fs::read(again.join("model.json.gz")).unwrap();
    assert!(!one.is_empty());
    assert!(one == two, "same corpus and settings, same model file");

    let output = leadsift_command()
        .args(["eval", "--json", "--all", "--model"])
        .arg(&first)
        .arg(&corpus)
        .output()
        .expect("run leadsift eval");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let document: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(document["examples"], 60);
    let variants = document["variants"].as_array().unwrap();
    let names: Vec<&str> = variants.iter().map(|v| v["variant"].as_str().unwrap()).collect();
    assert_eq!(names, ["rules only", "model only", "rules + model"]);
    let combined = &variants[2]["report"];
    let summary = combined; // the summary's fields are at the report's top level
    assert_eq!(summary["total"], 60, "{combined}");
    assert!(summary["ham_spam_fp_rate"].is_number());
    assert_eq!(summary["confusion"].as_array().unwrap().len(), 5, "5×5 confusion matrix");
    let spam = summary["classes"].as_array().unwrap().iter().find(|c| c["class"] == "spam").unwrap();
    assert!(spam["f1"].as_f64().unwrap() > 0.9, "trained on these very messages: {spam}");
    let rules = combined["rules"].as_array().unwrap();
    assert!(rules.iter().any(|r| r["hits"].as_u64() > Some(0) && r["precision"].is_number()), "{rules:?}");

    let text = leadsift_command().args(["eval", "--model"]).arg(&first).arg(&corpus).output().unwrap();
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains("label \\ verdict") && text.contains("ham→spam"), "{text}");
}
