//! Deserializer messages in config words. serde describes what it expected in Rust
//! terms (`expected u32`, `expected struct BrokerConfig`, `found map`); an operator
//! editing a TOML file should read `expected a whole number from 0 to 4294967295`,
//! `expected a table`, `found a table`.

/// `message` with every Rust type name replaced by what it means in TOML.
pub(crate) fn message(message: &str) -> String {
    let message = message.trim();
    // serde's shapes: "invalid type: <found>, expected <what>", "invalid value: <found>,
    // expected <what>", "invalid length <n>, expected <what>". The found part may quote
    // the value (which may itself contain ", expected "), so split at the last one.
    let Some((head, expected)) = message.rsplit_once(", expected ") else { return message.to_owned() };
    let head = head
        .replacen("invalid type: map", "invalid type: a table", 1)
        .replacen("invalid type: sequence", "invalid type: an array", 1)
        .replacen("invalid type: floating point", "invalid type: a number with a fraction", 1);
    format!("{head}, expected {}", expectation(expected))
}

/// What serde's "expected …" means in TOML.
fn expectation(expected: &str) -> String {
    let whole = |max: &str| format!("a whole number from 0 to {max}");
    match expected {
        "u8" => whole("255"),
        "u16" => whole("65535"),
        "u32" => whole("4294967295"),
        "u64" | "usize" | "u128" => "a whole number, 0 or more".into(),
        "i8" | "i16" | "i32" | "i64" | "isize" | "i128" => "a whole number".into(),
        "f32" | "f64" => "a number".into(),
        "a sequence" => "an array".into(),
        "a map" => "a table".into(),
        "a borrowed string" => "a string".into(),
        "a character" => "a single character".into(),
        "option" => "a value".into(),
        "unit" => "no value".into(),
        "variant identifier" | "field identifier" => "a name".into(),
        other => match rust_type_kind(other) {
            Some(Kind::Table) => "a table".into(),
            Some(Kind::TaggedTable) => "a table with a `type` key".into(),
            Some(Kind::Enum) => "one of the names the key allows (see config/sendfleet.example.toml)".into(),
            None => other.to_owned(),
        },
    }
}

enum Kind {
    /// A struct: a TOML table.
    Table,
    /// An internally tagged enum: a table whose `type` picks the variant.
    TaggedTable,
    /// A plain enum: one of its names.
    Enum,
}

/// serde's "struct Name", "internally tagged enum Name", "enum Name" and the like.
fn rust_type_kind(expected: &str) -> Option<Kind> {
    let (kind, name) = expected.rsplit_once(' ')?;
    if !name.chars().next().is_some_and(|c| c.is_ascii_uppercase()) || !name.chars().all(|c| c.is_alphanumeric()) {
        return None;
    }
    match kind {
        "struct" | "tuple struct" | "newtype struct" | "unit struct" | "struct variant" => Some(Kind::Table),
        "internally tagged enum" | "adjacently tagged enum" => Some(Kind::TaggedTable),
        "enum" | "untagged enum" => Some(Kind::Enum),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::message;

    #[test]
    fn rust_names_become_toml_words() {
        assert_eq!(
            message("invalid type: string \"fast\", expected u32"),
            "invalid type: string \"fast\", expected a whole number from 0 to 4294967295"
        );
        assert_eq!(
            message("invalid type: integer `5`, expected struct BrokerConfig"),
            "invalid type: integer `5`, expected a table"
        );
        assert_eq!(message("invalid type: map, expected a string"), "invalid type: a table, expected a string");
        assert_eq!(
            message("invalid type: string \"a, expected b\", expected a sequence"),
            "invalid type: string \"a, expected b\", expected an array"
        );
        assert_eq!(
            message("unknown field `prefx`, expected one of `url`, `prefix`, `queue_type`"),
            "unknown field `prefx`, expected one of `url`, `prefix`, `queue_type`"
        );
    }
}
