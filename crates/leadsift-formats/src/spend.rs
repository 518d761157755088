//! Ad spend CSV → validated [`AdSpend`] lines.
//!
//! The columns are found by their header names (`date, source, campaign,
//! amount, currency`, in any order, case-insensitive; Russian names such as
//! `дата`, `источник`, `кампания`, `сумма`, `валюта` too), so an export from
//! an ad cabinet needs only its header renamed. The delimiter is `,`, `;` or
//! a tab, whichever the header uses: spreadsheets in a Russian locale save
//! `;` with decimal commas. The file is validated whole: any bad line makes
//! the import fail with every error listed as `LINE: message`, and nothing
//! is imported, so a fixed file can simply be imported again.

use std::collections::HashMap;

use chrono::NaiveDate;
use leadsift_core::{AdSpend, Amount, Currency};

/// At most this many errors are listed; the rest are counted.
const MAX_REPORTED_ERRORS: usize = 50;

/// One problem in a spend file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpendLineError {
    /// 1-based line number in the file (the header is line 1).
    pub line: u64,
    pub message: String,
}

impl std::fmt::Display for SpendLineError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

/// Every problem found in a spend file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", render(.errors, *.more))]
pub struct SpendFileError {
    pub errors: Vec<SpendLineError>,
    /// Errors beyond the ones listed.
    pub more: usize,
}

fn render(errors: &[SpendLineError], more: usize) -> String {
    let mut text = errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n");
    if more > 0 {
        text.push_str(&format!("\n… and {more} more errors"));
    }
    text
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Column {
    Date,
    Source,
    Campaign,
    Amount,
    Currency,
}

fn column_of(name: &str) -> Option<Column> {
    let name = name.trim().trim_start_matches('\u{feff}').to_lowercase();
    Some(match name.as_str() {
        "date" | "day" | "дата" | "день" => Column::Date,
        "source" | "utm_source" | "источник" => Column::Source,
        "campaign" | "utm_campaign" | "кампания" => Column::Campaign,
        "amount" | "spend" | "cost" | "сумма" | "расход" | "стоимость" => Column::Amount,
        "currency" | "валюта" => Column::Currency,
        _ => return None,
    })
}

fn parse_date(raw: &str) -> Option<NaiveDate> {
    let raw = raw.trim();
    ["%Y-%m-%d", "%d.%m.%Y", "%Y/%m/%d"].iter().find_map(|format| NaiveDate::parse_from_str(raw, format).ok())
}

/// Parses a spend CSV. `default_currency` fills lines of a file without a
/// currency column (or with an empty cell).
pub fn parse_spend_csv(bytes: &[u8], default_currency: &Currency) -> Result<Vec<AdSpend>, SpendFileError> {
    let fail = |line: u64, message: String| SpendFileError { errors: vec![SpendLineError { line, message }], more: 0 };
    let text = std::str::from_utf8(bytes).map_err(|e| fail(1, format!("the file is not UTF-8 text: {e}")))?;
    let header_line = text.lines().next().unwrap_or_default();
    let delimiter = [b';', b'\t', b','].into_iter().max_by_key(|d| header_line.bytes().filter(|b| b == d).count());
    let mut reader = csv::ReaderBuilder::new()
        .delimiter(delimiter.unwrap_or(b','))
        .flexible(true)
        .trim(csv::Trim::All)
        .from_reader(text.as_bytes());
    let headers = reader.headers().map_err(|e| fail(1, format!("cannot read the header: {e}")))?.clone();
    let mut columns: HashMap<Column, usize> = HashMap::new();
    for (index, name) in headers.iter().enumerate() {
        if let Some(column) = column_of(name)
            && columns.insert(column, index).is_some()
        {
            return Err(fail(1, format!("the header names the column {name:?} twice")));
        }
    }
    let missing: Vec<&str> = [(Column::Date, "date"), (Column::Source, "source"), (Column::Amount, "amount")]
        .into_iter()
        .filter(|(column, _)| !columns.contains_key(column))
        .map(|(_, name)| name)
        .collect();
    if !missing.is_empty() {
        return Err(fail(
            1,
            format!(
                "the header lacks {} (expected date, source, campaign, amount, currency; found {:?})",
                missing.join(", "),
                headers.iter().collect::<Vec<_>>()
            ),
        ));
    }

    let mut lines = Vec::new();
    let mut errors = Vec::new();
    let mut more = 0;
    let mut seen: HashMap<(NaiveDate, String, String), u64> = HashMap::new();
    for record in reader.records() {
        let (line, outcome) = match record {
            Err(error) => (error.position().map_or(0, |p| p.line()), Err(format!("unreadable CSV: {error}"))),
            Ok(record) => {
                let line = record.position().map_or(0, |p| p.line());
                if record.iter().all(str::is_empty) {
                    continue;
                }
                let cell = |column| columns.get(&column).and_then(|&i| record.get(i)).unwrap_or("");
                (
                    line,
                    parse_line(
                        cell(Column::Date),
                        cell(Column::Source),
                        cell(Column::Campaign),
                        cell(Column::Amount),
                        cell(Column::Currency),
                        default_currency,
                    ),
                )
            }
        };
        match outcome {
            Ok(spend) => {
                let key = (spend.date, spend.source.clone(), spend.campaign.clone());
                if let Some(first) = seen.insert(key, line) {
                    errors.push(SpendLineError {
                        line,
                        message: format!(
                            "{} / {} / {:?} is already on line {first}: one line per date, source and campaign",
                            spend.date, spend.source, spend.campaign
                        ),
                    });
                } else {
                    lines.push(spend);
                }
            }
            Err(message) if errors.len() < MAX_REPORTED_ERRORS => errors.push(SpendLineError { line, message }),
            Err(_) => more += 1,
        }
    }
    if errors.is_empty() { Ok(lines) } else { Err(SpendFileError { errors, more }) }
}

fn parse_line(
    date: &str,
    source: &str,
    campaign: &str,
    amount: &str,
    currency: &str,
    default_currency: &Currency,
) -> Result<AdSpend, String> {
    let date = parse_date(date).ok_or_else(|| format!("invalid date {date:?}: expected YYYY-MM-DD or DD.MM.YYYY"))?;
    if source.is_empty() {
        return Err("the source is empty".to_owned());
    }
    let amount = Amount::parse(amount).map_err(|e| e.to_string())?;
    let currency = if currency.is_empty() {
        default_currency.clone()
    } else {
        Currency::parse(currency).map_err(|e| e.to_string())?
    };
    Ok(AdSpend { date, source: source.to_owned(), campaign: campaign.to_owned(), amount, currency })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rub() -> Currency {
        Currency::parse("RUB").unwrap()
    }

    #[test]
    fn reads_comma_and_semicolon_files_with_any_column_order() {
        let csv =
            "date,source,campaign,amount,currency\n2026-11-01,yandex,fasad,1250.50,RUB\n\n2026-11-02,vk,,300,rub\n";
        let lines = parse_spend_csv(csv.as_bytes(), &rub()).unwrap();
        assert_eq!(lines.len(), 2);
        assert_eq!((lines[0].amount.minor(), lines[0].campaign.as_str()), (125_050, "fasad"));
        assert_eq!((lines[1].campaign.as_str(), lines[1].currency.as_str()), ("", "RUB"));

        let csv = "\u{feff}Сумма;Дата;Источник;Кампания\n1 250,50;01.11.2026;yandex;fasad\n";
        let lines = parse_spend_csv(csv.as_bytes(), &rub()).unwrap();
        assert_eq!(lines[0].date, NaiveDate::from_ymd_opt(2026, 11, 1).unwrap());
        assert_eq!((lines[0].amount.minor(), lines[0].currency.as_str()), (125_050, "RUB"));
    }

    #[test]
    fn every_bad_line_is_reported_with_its_number() {
        let csv = "date,source,campaign,amount\n2026-11-01,yandex,a,10\n2026-13-01,yandex,b,10\n\
                   2026-11-02,,c,10\n2026-11-03,vk,d,-5\n2026-11-01,yandex,a,12\n";
        let error = parse_spend_csv(csv.as_bytes(), &rub()).unwrap_err();
        let lines: Vec<u64> = error.errors.iter().map(|e| e.line).collect();
        assert_eq!(lines, [3, 4, 5, 6]);
        let text = error.to_string();
        assert!(text.contains("line 3: invalid date \"2026-13-01\""), "{text}");
        assert!(text.contains("line 4: the source is empty"), "{text}");
        assert!(text.contains("line 6: 2026-11-01 / yandex / \"a\" is already on line 2"), "{text}");
    }

    #[test]
    fn a_header_without_the_needed_columns_is_refused() {
        let error = parse_spend_csv(b"day;utm_source\n2026-11-01;x\n", &rub()).unwrap_err();
        assert!(error.to_string().starts_with("line 1: the header lacks amount"), "{error}");
        assert!(parse_spend_csv(&[0xff, 0xfe, 0x00], &rub()).is_err());
    }
}
