//! Destinations at the door: the E.164 shape every number is held to and, unless
//! `dispatcher.check_numbering_plan` is off, the numbering plan of its country
//! (libphonenumber's metadata through the `phonenumber` crate), so a number no operator
//! can route is refused here instead of being sent and paid for at the provider.
//! `examples/numbering_plan_cost.rs` measures what a check costs per number.

use sendfleet_config::DispatcherConfig;

use crate::Rejection;

/// Whether destinations are checked against their country's numbering plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NumberingPlan {
    /// Shape and plan: the default.
    Checked,
    /// Shape only (fictional test numbers).
    Ignored,
}

impl NumberingPlan {
    /// What `dispatcher.check_numbering_plan` asks for.
    pub fn of(config: &DispatcherConfig) -> NumberingPlan {
        if config.check_numbering_plan { NumberingPlan::Checked } else { NumberingPlan::Ignored }
    }
}

/// Checks a destination: E.164 (`+`, a non-zero country digit, 8–15 digits in all)
/// and, when `plan` is [`NumberingPlan::Checked`], a valid number of its country.
pub fn check_destination(to: &str, plan: NumberingPlan) -> Result<(), Rejection> {
    let digits = to.strip_prefix('+').unwrap_or("");
    let shaped =
        (8..=15).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit()) && !digits.starts_with('0');
    if !shaped {
        return Err(Rejection::new(
            "invalid_destination",
            format!("'{to}' is not an E.164 number (+ and 8-15 digits)"),
        ));
    }
    if plan == NumberingPlan::Checked && !phonenumber::parse(None, to).is_ok_and(|n| phonenumber::is_valid(&n)) {
        return Err(Rejection::new(
            "invalid_destination",
            format!("'{to}' is not a valid number in its country's numbering plan"),
        ));
    }
    Ok(())
}

/// Loads the numbering-plan metadata, which the first check would otherwise pay for
/// (about 0.3 s): call it at start-up, before requests arrive.
pub fn load_numbering_plans() {
    drop(phonenumber::parse(None, "+442071838750"));
}

/// The E.164 form of a number an operator typed as a country code and a national
/// number (`44` and `07700 900123`): separators dropped, and the national (trunk)
/// prefix removed where that country dials one — the UK's leading `0` goes, Italy's
/// `0` of a landline stays (it is part of the number). A number the plans do not know
/// is kept as typed, for [`check_destination`] to judge.
pub fn from_national(country_code: &str, number: &str) -> String {
    let digits = |s: &str| s.chars().filter(char::is_ascii_digit).collect::<String>();
    let (code, national) = (digits(country_code), digits(number));
    in_country(&code, &national).unwrap_or_else(|| format!("+{code}{national}"))
}

/// `national` read as a number dialled inside the main country of calling code `code`,
/// in E.164; `None` when the plans know no such country or number.
fn in_country(code: &str, national: &str) -> Option<String> {
    let code: u16 = code.parse().ok()?;
    let regions = phonenumber::metadata::DATABASE.by_code(&code)?;
    let main = regions.iter().find(|m| m.is_main_country_for_code()).or(regions.first())?;
    let region: phonenumber::country::Id = main.id().parse().ok()?;
    let parsed = phonenumber::parse(Some(region), national).ok()?;
    (parsed.code().value() == code).then(|| parsed.format().mode(phonenumber::Mode::E164).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shape_is_always_checked() {
        for bad in ["15551234567", "+1555", "+0123456789", "+1555123456a", "+1234567890123456"] {
            for plan in [NumberingPlan::Checked, NumberingPlan::Ignored] {
                let err = check_destination(bad, plan).unwrap_err();
                assert_eq!(err.code, "invalid_destination", "{bad}");
                assert!(err.reason.contains(bad) && err.reason.contains("E.164"), "{}", err.reason);
            }
        }
    }

    #[test]
    fn numbers_outside_their_countrys_plan_are_refused_unless_the_plan_is_ignored() {
        // A fictional NANP number (area code 555), a London number one digit short, a
        // country code no country has.
        for bad in ["+15551234567", "+4420718387", "+999123456789"] {
            let err = check_destination(bad, NumberingPlan::Checked).unwrap_err();
            assert_eq!(err.code, "invalid_destination", "{bad}");
            assert!(err.reason.contains("numbering plan"), "{}", err.reason);
            assert!(check_destination(bad, NumberingPlan::Ignored).is_ok(), "{bad}");
        }
        for good in ["+14155550100", "+442071838750", "+919876543210", "+905321234567", "+390612345678"] {
            assert!(check_destination(good, NumberingPlan::Checked).is_ok(), "{good}");
        }
    }

    #[test]
    fn a_national_number_keeps_the_zeros_that_belong_to_it() {
        // Italy dials no trunk prefix: the 0 of a Rome landline is part of the number.
        assert_eq!(from_national("+39", "06 1234 5678"), "+390612345678");
        assert_eq!(from_national("999", "12"), "+99912", "no such country: kept as typed");
        // The UK's and India's trunk 0 is dialled nationally only.
        assert_eq!(from_national("44", "07700-900123"), "+447700900123");
        assert_eq!(from_national("+91", "098765 43210"), "+919876543210");
        assert_eq!(from_national("+91", "98765 43210"), "+919876543210");
    }

    #[test]
    fn the_config_switch_picks_the_check() {
        let mut config = DispatcherConfig::default();
        assert_eq!(NumberingPlan::of(&config), NumberingPlan::Checked, "on by default");
        config.check_numbering_plan = false;
        assert_eq!(NumberingPlan::of(&config), NumberingPlan::Ignored);
    }
}
