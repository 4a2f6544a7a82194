//! The systemd unit of docs/deploy.md: `systemd-analyze verify` accepts it and
//! `systemd-analyze security` rates it under 3 ("OK"), where systemd is
//! installed (CI requires it: `SSED_REQUIRE_SYSTEMD=1`).

use std::path::PathBuf;
use std::process::Command;

/// The unit as docs/deploy.md shows it, its `ExecStart` pointed at the binary
/// under test (verify checks that the program exists).
fn unit_from_readme() -> String {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/deploy.md"))
        .expect("docs/deploy.md");
    let start = readme
        .find("# /etc/systemd/system/ssed.service\n")
        .expect("the unit in docs/deploy.md");
    let body = &readme[start..];
    let body = &body[body.find('\n').expect("a line") + 1..];
    let end = body.find("```").expect("the end of the unit's block");
    body[..end].replace("/usr/local/bin/ssed", env!("CARGO_BIN_EXE_ssed"))
}

fn analyze_available() -> bool {
    let found = Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        assert!(
            std::env::var_os("SSED_REQUIRE_SYSTEMD").is_none(),
            "systemd-analyze is required (SSED_REQUIRE_SYSTEMD) but not installed"
        );
        eprintln!("skipped: systemd-analyze not installed");
    }
    found
}

#[test]
fn the_readme_unit_verifies_and_rates_under_3() {
    if !analyze_available() {
        return;
    }
    let dir = std::env::temp_dir().join(format!("ssed-unit-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path: PathBuf = dir.join("ssed.service");
    std::fs::write(&path, unit_from_readme()).unwrap();
    let verify = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&verify.stderr).to_string();
    assert!(verify.status.success(), "verify: {said}");
    // Nothing about our unit (other units of the host may be noisy).
    assert!(!said.contains("ssed.service"), "verify: {said}");
    let security = Command::new("systemd-analyze")
        .args(["security", "--offline=true", "--no-pager"])
        .arg(&path)
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&security.stdout).to_string();
    let _ = std::fs::remove_dir_all(&dir);
    let level: f64 = out
        .lines()
        .find_map(|l| l.split_once("Overall exposure level for ssed.service: "))
        .and_then(|(_, rest)| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no overall level in: {out}"));
    assert!(level < 3.0, "exposure {level}:\n{out}");
}
