//! What checking destinations against their country's numbering plan costs per number,
//! next to what the dispatcher already spends on each: the figure behind
//! `dispatcher.check_numbering_plan`.
//!
//! ```sh
//! cargo run --release -p sendfleet-dispatcher --example numbering_plan_cost
//! ```
//!
//! Each variant is timed over 100,000 numbers (repeated until a run takes ≥ 200 ms of
//! CPU), 7 runs, interleaved; the median is printed. Time is this thread's CPU time
//! (`/proc/thread-self/schedstat`), so other processes on a shared machine do not
//! inflate it.

use std::hint::black_box;

use sendfleet_config::Config;
use sendfleet_dispatcher::{NumberingPlan, check_destination, load_numbering_plans, plan};
use sendfleet_protocol::{Channel, Content, SendRequest};

const NUMBERS: usize = 100_000;
const RUNS: usize = 7;
/// The shortest run, in CPU nanoseconds: 50 scheduler ticks, so a tick's rounding is ≤ 2 %.
const MIN_RUN_NS: u64 = 200_000_000;

/// Valid numbers of several countries and plans (mobile and fixed), as a fleet sees.
fn numbers() -> Vec<String> {
    let prefixes = ["+9198", "+4471", "+1415555", "+90532", "+49151", "+3906", "+3933", "+3361"];
    let widths = [8, 8, 4, 7, 8, 8, 8, 7];
    (0..NUMBERS)
        .map(|i| {
            let k = i % prefixes.len();
            format!("{}{:0w$}", prefixes[k], i % 10usize.pow(widths[k]), w = widths[k] as usize)
        })
        .collect()
}

/// This thread's CPU time in nanoseconds (first field of schedstat).
fn cpu_ns() -> u64 {
    let stat = std::fs::read_to_string("/proc/thread-self/schedstat").expect("schedstat (Linux)");
    stat.split_whitespace().next().and_then(|n| n.parse().ok()).expect("schedstat field")
}

fn request(to: &str) -> SendRequest {
    SendRequest {
        priority: Default::default(),
        schema_version: 1,
        message_id: None,
        channel: Channel::Sms,
        provider: None,
        to: Some(to.to_owned()),
        recipients: vec![],
        sender: None,
        content: Some(Content::Text { text: "Your code is 1234".into(), suggestions: vec![] }),
        template: None,
        options: Default::default(),
        fallback: None,
        metadata: Default::default(),
        trace_id: None,
    }
}

fn main() {
    let toml = r#"
[[providers]]
id = "sms"
kind = "infobip_sms"
base_url = "https://x.api.infobip.com"
api_key_env = "K"
sender_ids = ["ACME"]
default_for_channel = true
"#;
    let checked = Config::from_toml(toml, &|_| Some("key".into()), &sendfleet_providers::VENDORS).expect("config");
    let mut shape_only = checked.clone();
    shape_only.dispatcher.check_numbering_plan = false;
    let numbers = numbers();
    let start = cpu_ns();
    load_numbering_plans();
    println!("loading the numbering plans: {:.0} ms (once, at start-up)", (cpu_ns() - start) as f64 / 1e6);
    let invalid: Vec<&String> =
        numbers.iter().filter(|n| check_destination(n, NumberingPlan::Checked).is_err()).collect();
    assert!(
        invalid.is_empty(),
        "every benchmark number is valid: {} are not, e.g. {:?}",
        invalid.len(),
        &invalid[..invalid.len().min(5)]
    );

    type Variant<'a> = (&'a str, Box<dyn Fn(&str) + 'a>);
    let variants: Vec<Variant<'_>> = vec![
        ("shape check", Box::new(|n| drop(black_box(check_destination(n, NumberingPlan::Ignored))))),
        ("shape + plan check", Box::new(|n| drop(black_box(check_destination(n, NumberingPlan::Checked))))),
        ("plan() of a request, plan check off", Box::new(|n| drop(black_box(plan(request(n), &shape_only))))),
        ("plan() of a request, plan check on", Box::new(|n| drop(black_box(plan(request(n), &checked))))),
    ];
    let mut samples = vec![Vec::new(); variants.len()];
    for _ in 0..RUNS {
        for (index, (_, run)) in variants.iter().enumerate() {
            // schedstat advances by scheduler ticks (4 ms at HZ=250), so a cheap variant
            // is repeated over the numbers until a run spans at least MIN_RUN_NS.
            let start = cpu_ns();
            let mut passes = 0u64;
            while passes == 0 || cpu_ns() - start < MIN_RUN_NS {
                for number in &numbers {
                    run(number);
                }
                passes += 1;
            }
            samples[index].push((cpu_ns() - start) as f64 / (passes as f64 * NUMBERS as f64));
        }
    }
    let medians: Vec<f64> = samples
        .iter_mut()
        .map(|runs| {
            runs.sort_by(f64::total_cmp);
            runs[RUNS / 2]
        })
        .collect();
    for ((name, _), median) in variants.iter().zip(&medians) {
        println!("{name:<38} {median:>9.0} ns/number (median of {RUNS} runs of {NUMBERS})");
    }
    let plan_cost = medians[1] - medians[0];
    println!(
        "plan check: {plan_cost:.0} ns/number, {:.1} % of one core at 4,600 numbers/s; plan() {:.2}x with it",
        plan_cost * 4_600.0 / 1e9 * 100.0,
        medians[3] / medians[2]
    );
}
