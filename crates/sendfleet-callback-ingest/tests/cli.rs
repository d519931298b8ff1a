//! `callback-ingest callback-urls`: the config flags may follow the subcommand, as an
//! operator types them.

use std::process::Command;

const CONFIG: &str = r#"
[callback_ingest]
public_base_url = "https://hooks.example.com"

[[providers]]
id = "sms"
kind = "infobip_sms"
base_url = "https://x.api.infobip.com"
api_key_env = "KEY"
sender_ids = ["ACME"]
callback_token_env = "CALLBACK_TOKEN"
"#;

#[test]
fn callback_urls_takes_config_before_or_after_the_subcommand() {
    let path = std::env::temp_dir().join(format!("sendfleet-cli-ingest-{}.toml", std::process::id()));
    std::fs::write(&path, CONFIG).expect("write config");
    let path_text = path.to_str().expect("utf-8 path");
    let mut outputs = Vec::new();
    for args in [["callback-urls", "--config", path_text], ["--config", path_text, "callback-urls"]] {
        let run = Command::new(env!("CARGO_BIN_EXE_callback-ingest"))
            .args(args)
            .env_clear()
            .env("KEY", "api-key")
            .env("CALLBACK_TOKEN", "callback-token-0123456789")
            .output()
            .expect("run callback-ingest");
        assert_eq!(run.status.code(), Some(0), "{args:?}: {}", String::from_utf8_lossy(&run.stderr));
        outputs.push(String::from_utf8(run.stdout).expect("utf-8"));
    }
    drop(std::fs::remove_file(&path));
    assert_eq!(outputs[0], outputs[1]);
    assert!(
        outputs[0].contains(
            "sms\tdelivery reports\thttps://hooks.example.com/callbacks/sms/callback-token-0123456789/delivery"
        ),
        "{}",
        outputs[0]
    );
}
