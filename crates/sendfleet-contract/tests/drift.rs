//! The committed contract files are exactly what the code generates.
//!
//! `SENDFLEET_REGENERATE=1 cargo nextest run -p sendfleet-contract` rewrites them.

use std::path::PathBuf;

use sendfleet_contract::generated_files;

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

#[test]
fn committed_contract_files_match_the_code() {
    let regenerate = std::env::var("SENDFLEET_REGENERATE").is_ok_and(|v| v == "1");
    let mut stale = Vec::new();
    for file in generated_files() {
        let path = repo_root().join(&file.path);
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        if committed == file.text {
            continue;
        }
        if regenerate {
            std::fs::write(&path, &file.text).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
        } else {
            stale.push(file.path);
        }
    }
    assert!(
        stale.is_empty(),
        "these committed files differ from what the code generates: {stale:?}\n\
         Rewrite them with: SENDFLEET_REGENERATE=1 cargo nextest run -p sendfleet-contract committed_contract_files\n\
         and commit the result (review the diff: it is the contract other teams read)."
    );
}

#[test]
fn every_generated_file_is_valid_json_of_the_right_kind() {
    let files = generated_files();
    assert_eq!(files.len(), 5, "four wire schemas and the OpenAPI document");
    for file in &files {
        let value: serde_json::Value = serde_json::from_str(&file.text).expect("generated JSON parses");
        if file.path.starts_with("docs/schema/") {
            jsonschema::meta::validate(&value).unwrap_or_else(|e| panic!("{} is not a JSON Schema: {e}", file.path));
            assert_eq!(value["$schema"], "https://json-schema.org/draft/2020-12/schema", "{}", file.path);
        } else {
            assert_eq!(value["openapi"], "3.1.0");
        }
        assert!(file.text.ends_with("}\n"), "{} ends with one newline", file.path);
    }
}
