//! Keeps `docs/conformance.md` honest: every normative statement that binds the
//! server (Binds `server` or `both`) names the test that checks it, or says why it
//! does not apply (`n/a: <reason>`); every test it names exists; the table and
//! `docs/conformance-ids.txt` list the same statements; and the coverage counts at
//! the end of the file match the tables.
//!
//! The failure message lists every offending row at once, so one run shows all
//! there is to fix.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

/// The two specifications, as the document's section headings and the ids file name them.
const SPECS: [(&str, &str); 2] = [("MQTT 5.0", "v5"), ("MQTT 3.1.1", "v3")];

/// Placeholder of a row that has no test yet.
const NO_TEST: &str = "—";

/// One row of a statement table.
#[derive(Debug, Clone)]
struct Row {
    /// `v5` or `v3`.
    spec: &'static str,
    line: usize,
    id: String,
    binds: String,
    test: String,
}

/// How a row's Test cell maps the statement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mapping {
    Tests,
    NotApplicable,
    Missing,
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The cells of a Markdown table row, trimmed (without the empty outer ones).
fn cells(line: &str) -> Vec<&str> {
    let inner = line.trim().trim_start_matches('|').trim_end_matches('|');
    inner.split('|').map(str::trim).collect()
}

/// Every statement row of both tables, with the spec it belongs to.
fn parse_rows(document: &str, problems: &mut Vec<String>) -> Vec<Row> {
    let mut rows = Vec::new();
    let mut spec: Option<&'static str> = None;
    for (index, line) in document.lines().enumerate() {
        let line_number = index + 1;
        if let Some(heading) = line.strip_prefix("## ") {
            spec = SPECS
                .iter()
                .find(|(name, _)| heading.trim() == *name)
                .map(|(_, short)| *short);
            continue;
        }
        if !line.starts_with("| MQTT-") {
            continue;
        }
        let Some(spec) = spec else {
            problems.push(format!(
                "line {line_number}: statement row outside the MQTT 5.0 / MQTT 3.1.1 sections"
            ));
            continue;
        };
        let cells = cells(line);
        if cells.len() != 5 {
            problems.push(format!(
                "line {line_number}: expected 5 cells (Statement | Section | Binds | Summary | Test), found {}",
                cells.len()
            ));
            continue;
        }
        rows.push(Row {
            spec,
            line: line_number,
            id: cells[0].to_string(),
            binds: cells[2].to_string(),
            test: cells[4].to_string(),
        });
    }
    rows
}

/// `(spec, id) -> binds` from `docs/conformance-ids.txt` (`v5 MQTT-1.5.4-1 both`).
fn parse_ids(ids: &str, problems: &mut Vec<String>) -> BTreeMap<(String, String), String> {
    let mut map = BTreeMap::new();
    for (index, line) in ids.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let fields: Vec<&str> = line.split_whitespace().collect();
        match fields.as_slice() {
            [spec, id, binds] => {
                let key = (spec.to_string(), id.to_string());
                if map.insert(key, binds.to_string()).is_some() {
                    problems.push(format!(
                        "conformance-ids.txt line {}: {spec} {id} listed twice",
                        index + 1
                    ));
                }
            }
            _ => problems.push(format!(
                "conformance-ids.txt line {}: expected `<spec> <id> <binds>`, got {line:?}",
                index + 1
            )),
        }
    }
    map
}

/// True if `source` holds a test function `name`: `fn name(` (or `fn name<`), with a
/// `#[test]` / `#[tokio::test]`-style attribute among the attributes and comments
/// right above it.
fn has_test_fn(source: &str, name: &str) -> bool {
    let lines: Vec<&str> = source.lines().collect();
    let needle = format!("fn {name}");
    for (index, line) in lines.iter().enumerate() {
        let Some(at) = line.find(&needle) else {
            continue;
        };
        let rest = &line[at + needle.len()..];
        if !(rest.starts_with('(') || rest.starts_with('<')) {
            continue;
        }
        let before = &line[..at];
        if !(before.trim().is_empty() || before.trim_end().ends_with("async")) {
            continue;
        }
        let mut above = index;
        while above > 0 {
            above -= 1;
            let previous = lines[above].trim();
            if previous.starts_with("#[") {
                if previous.contains("test") {
                    return true;
                }
            } else if !previous.starts_with("//") {
                break;
            }
        }
    }
    false
}

/// Test references (`crates/.../file.rs::name`) found anywhere in `text`.
fn references(text: &str) -> Vec<&str> {
    text.split(|c: char| c.is_whitespace() || c == ',' || c == ';' || c == '(' || c == ')')
        .map(|word| word.trim_matches(|c: char| c == '`' || c == '.' || c == ':'))
        .filter(|word| word.starts_with("crates/") && word.contains(".rs::"))
        .collect()
}

/// Checks one `path::name` reference; `None` if it names an existing test.
fn check_reference(
    reference: &str,
    root: &Path,
    sources: &mut HashMap<String, Option<String>>,
) -> Option<String> {
    let Some((path, name)) = reference.split_once("::") else {
        return Some(format!("{reference:?} is not `path::test_name`"));
    };
    let valid_name = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !path.starts_with("crates/") || !path.ends_with(".rs") || !valid_name {
        return Some(format!(
            "{reference:?} is not `crates/<path>.rs::<test_name>`"
        ));
    }
    let source = sources
        .entry(path.to_string())
        .or_insert_with(|| std::fs::read_to_string(root.join(path)).ok());
    match source {
        None => Some(format!("{path} does not exist")),
        Some(source) if !has_test_fn(source, name) => {
            Some(format!("{path} has no test function `{name}`"))
        }
        Some(_) => None,
    }
}

/// Classifies a row's Test cell and collects what is wrong with it.
fn check_row(
    row: &Row,
    root: &Path,
    sources: &mut HashMap<String, Option<String>>,
) -> (Mapping, Vec<String>) {
    let mut errors = Vec::new();
    let cell = row.test.as_str();
    let binds_server = row.binds == "server" || row.binds == "both";
    if !matches!(row.binds.as_str(), "server" | "both" | "client") {
        errors.push(format!(
            "Binds is {:?}, not server, both or client",
            row.binds
        ));
    }
    let mapping = if cell.is_empty() || cell == NO_TEST {
        if binds_server {
            errors.push("binds the server but names no test (Test is `—`)".to_string());
        }
        Mapping::Missing
    } else if let Some(reason) = cell.strip_prefix("n/a:") {
        if reason.trim().is_empty() {
            errors.push("`n/a:` without a reason".to_string());
        }
        // A reason may point at the test that shows why; that test must exist too.
        for reference in references(reason) {
            if let Some(error) = check_reference(reference, root, sources) {
                errors.push(error);
            }
        }
        Mapping::NotApplicable
    } else {
        for entry in cell.split(',').map(str::trim) {
            if entry.is_empty() {
                errors.push(format!("empty entry in {cell:?}"));
            } else if let Some(error) = check_reference(entry, root, sources) {
                errors.push(error);
            }
        }
        Mapping::Tests
    };
    (mapping, errors)
}

/// Per spec: statements binding the server, covered by tests, n/a, unmapped.
type Counts = BTreeMap<&'static str, [usize; 4]>;

/// The coverage table the document states: `| MQTT 5.0 | 210 | 180 | 30 | 0 |`.
fn stated_counts(document: &str) -> Option<Counts> {
    let section = document.split("\n## Coverage").nth(1)?;
    let mut counts = Counts::new();
    for line in section.lines().filter(|line| line.starts_with('|')) {
        let cells = cells(line);
        let Some((_, short)) = SPECS.iter().find(|(name, _)| Some(name) == cells.first()) else {
            continue;
        };
        let numbers: Vec<usize> = cells
            .iter()
            .skip(1)
            .filter_map(|cell| cell.parse().ok())
            .collect();
        if let [bind, tests, not_applicable, unmapped] = numbers.as_slice() {
            counts.insert(*short, [*bind, *tests, *not_applicable, *unmapped]);
        }
    }
    Some(counts)
}

#[test]
fn conformance_map_is_complete_and_points_at_real_tests() {
    let root = repo_root();
    let document = std::fs::read_to_string(root.join("docs/conformance.md")).unwrap();
    let ids = std::fs::read_to_string(root.join("docs/conformance-ids.txt")).unwrap();
    let mut problems = Vec::new();
    let rows = parse_rows(&document, &mut problems);
    let listed = parse_ids(&ids, &mut problems);
    assert!(
        rows.len() > 300,
        "only {} statement rows parsed from docs/conformance.md",
        rows.len()
    );

    let mut sources = HashMap::new();
    let mut seen: BTreeMap<(String, String), usize> = BTreeMap::new();
    let mut counts = Counts::new();
    for row in &rows {
        let key = (row.spec.to_string(), row.id.clone());
        let mut errors = Vec::new();
        if let Some(first) = seen.insert(key.clone(), row.line) {
            errors.push(format!("listed twice (first on line {first})"));
        }
        match listed.get(&key) {
            None => errors.push("missing from docs/conformance-ids.txt".to_string()),
            Some(binds) if *binds != row.binds => errors.push(format!(
                "Binds is {} here but {binds} in docs/conformance-ids.txt",
                row.binds
            )),
            Some(_) => {}
        }
        let (mapping, row_errors) = check_row(row, &root, &mut sources);
        errors.extend(row_errors);
        if row.binds == "server" || row.binds == "both" {
            let count = counts.entry(row.spec).or_default();
            count[0] += 1;
            match mapping {
                Mapping::Tests => count[1] += 1,
                Mapping::NotApplicable => count[2] += 1,
                Mapping::Missing => count[3] += 1,
            }
        }
        for error in errors {
            problems.push(format!(
                "line {} ({} {}): {error}",
                row.line, row.spec, row.id
            ));
        }
    }
    for (spec, id) in listed.keys() {
        if !seen.contains_key(&(spec.clone(), id.clone())) {
            problems.push(format!(
                "docs/conformance-ids.txt: {spec} {id} has no row in docs/conformance.md"
            ));
        }
    }
    match stated_counts(&document) {
        None => problems.push("no `## Coverage` section with the counts".to_string()),
        Some(stated) => {
            for (name, short) in SPECS {
                let actual = counts.get(short).copied().unwrap_or_default();
                match stated.get(short) {
                    Some(numbers) if *numbers == actual => {}
                    Some(numbers) => problems.push(format!(
                        "Coverage for {name} says bind/tests/n-a/unmapped = {numbers:?}, the table gives {actual:?}"
                    )),
                    None => problems.push(format!(
                        "Coverage section has no row for {name} (the table gives {actual:?})"
                    )),
                }
            }
        }
    }
    assert!(
        problems.is_empty(),
        "docs/conformance.md has {} problem(s):\n{}",
        problems.len(),
        problems.join("\n")
    );
}

// The checker's own parts, on small inputs.

#[test]
fn finds_test_functions_only() {
    let source = "\
#[tokio::test]
async fn a_real_test() {}

// [MQTT-1.2.3-4] commented
#[test]
fn plain_test() {}

#[tokio::test(start_paused = true)]
async fn paused<S>() {}

fn helper() {}

/// docs
fn another_helper() {}
";
    assert!(has_test_fn(source, "a_real_test"));
    assert!(has_test_fn(source, "plain_test"));
    assert!(has_test_fn(source, "paused"));
    assert!(!has_test_fn(source, "helper"));
    assert!(!has_test_fn(source, "another_helper"));
    assert!(!has_test_fn(source, "a_real"), "a prefix is not the name");
    assert!(!has_test_fn(source, "missing"));
}

#[test]
fn rows_are_classified_and_checked() {
    let root = repo_root();
    let mut sources = HashMap::new();
    let row = |binds: &str, test: &str| Row {
        spec: "v5",
        line: 1,
        id: "MQTT-0.0.0-0".into(),
        binds: binds.into(),
        test: test.into(),
    };
    let this_file = "crates/server/tests/conformance_doc.rs";
    let good = format!(
        "{this_file}::finds_test_functions_only, {this_file}::rows_are_classified_and_checked"
    );
    let (mapping, errors) = check_row(&row("server", &good), &root, &mut sources);
    assert_eq!((mapping, errors), (Mapping::Tests, vec![]));

    let (mapping, errors) = check_row(&row("both", "—"), &root, &mut sources);
    assert_eq!(mapping, Mapping::Missing);
    assert_eq!(errors.len(), 1);
    let (_, errors) = check_row(&row("client", "—"), &root, &mut sources);
    assert!(errors.is_empty(), "client rows need no test");

    let (mapping, errors) = check_row(&row("server", "n/a:  "), &root, &mut sources);
    assert_eq!((mapping, errors.len()), (Mapping::NotApplicable, 1));
    let reason = format!("n/a: never done; see {this_file}::no_such_test");
    let (_, errors) = check_row(&row("server", &reason), &root, &mut sources);
    assert_eq!(errors.len(), 1, "{errors:?}");

    for bad in [
        "crates/server/tests/nope.rs::x",
        "tests/connect.rs::x",
        "crates/server/tests/conformance_doc.rs::has_test_fn",
        "crates/server/tests/conformance_doc.rs::",
    ] {
        let (_, errors) = check_row(&row("server", bad), &root, &mut sources);
        assert_eq!(errors.len(), 1, "{bad}: {errors:?}");
    }
}

#[test]
fn stated_counts_are_read() {
    let document = "x\n## Coverage\n\n| Spec | a | b | c | d |\n|---|---|---|---|---|\n| MQTT 5.0 | 3 | 1 | 1 | 1 |\n| MQTT 3.1.1 | 2 | 2 | 0 | 0 |\n| Total | 5 | 3 | 1 | 1 |\n";
    let counts = stated_counts(document).unwrap();
    assert_eq!(counts.get("v5"), Some(&[3, 1, 1, 1]));
    assert_eq!(counts.get("v3"), Some(&[2, 2, 0, 0]));
}
