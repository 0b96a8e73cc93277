//! Reports as CSV, for `report NAME --format csv` and the HTTP `/reports/{name}.csv`: one
//! of a report's lists (its main rows unless another is asked for), one column per field.

use serde_json::Value;

/// The list of a report a CSV holds when `rows` does not say.
pub fn main_rows(report: &str) -> &'static str {
    match report {
        "sla" => "compliance",
        "satisfaction" => "groups",
        "performance" | "inspections" => "agents",
        "erasures" => "erasures",
        _ => "periods",
    }
}

/// Rows of a report as CSV: one column per field (nested objects flattened with dots, as
/// `distribution.5`; lists as their JSON), in the order first met. A text cell that a
/// spreadsheet would read as a formula (`=`, `+`, `-`, `@`, tab, carriage return first) is
/// prefixed with `'`: names come from outside.
pub fn to_csv(rows: &[Value]) -> String {
    let flat: Vec<Vec<(String, Value)>> = rows
        .iter()
        .map(|row| {
            let mut cells = Vec::new();
            flatten("", row, &mut cells);
            cells
        })
        .collect();
    let mut columns: Vec<String> = Vec::new();
    for cells in &flat {
        for (name, _) in cells {
            if !columns.contains(name) {
                columns.push(name.clone());
            }
        }
    }
    let mut out = String::new();
    let line = |out: &mut String, cells: Vec<String>| {
        out.push_str(&cells.join(","));
        out.push_str("\r\n");
    };
    line(&mut out, columns.iter().map(|c| csv_cell(c)).collect());
    for cells in flat {
        let row = columns
            .iter()
            .map(|c| {
                cells
                    .iter()
                    .find(|(name, _)| name == c)
                    .map_or(String::new(), |(_, v)| match v {
                        Value::Null => String::new(),
                        Value::String(s) => csv_cell(&defused(s)),
                        other => csv_cell(&other.to_string()),
                    })
            })
            .collect();
        line(&mut out, row);
    }
    out
}

fn flatten(prefix: &str, value: &Value, out: &mut Vec<(String, Value)>) {
    match value {
        Value::Object(map) => {
            for (key, value) in map {
                let name = if prefix.is_empty() {
                    key.clone()
                } else {
                    format!("{prefix}.{key}")
                };
                flatten(&name, value, out);
            }
        }
        other => out.push((prefix.to_owned(), other.clone())),
    }
}

fn defused(s: &str) -> String {
    if s.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{s}")
    } else {
        s.to_owned()
    }
}

fn csv_cell(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn csv_flattens_quotes_and_defuses_formulas() {
        let rows = [
            json!({"key": "a,b", "distribution": {"1": 2, "5": 3}, "mean": 4.5}),
            json!({"key": "=HYPERLINK(\"x\")", "mean": null, "extra": [1, 2]}),
        ];
        // Columns in the order first met (a report's fields come sorted by name).
        assert_eq!(
            to_csv(&rows),
            "distribution.1,distribution.5,key,mean,extra\r\n\
             2,3,\"a,b\",4.5,\r\n\
             ,,\"'=HYPERLINK(\"\"x\"\")\",,\"[1,2]\"\r\n"
        );
    }
}
