//! Measurements of this process for the adversarial tests: its memory, and tests run in a
//! child process of their own so that other tests' allocations and sockets do not count.

/// A field of /proc/self/status, in bytes.
pub fn status_bytes(field: &str) -> Option<usize> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|line| line.starts_with(field))?;
    let kib: usize = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Runs `test` (an ignored test, by its full name) in a child process and returns the fields of
/// the line it printed starting with `MEASURED `.
pub fn child(test: &str) -> impl Fn(&str) -> String {
    let output = std::process::Command::new(std::env::current_exe().unwrap())
        .args([test, "--exact", "--ignored", "--nocapture"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "the child failed: {stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains("1 passed"),
        "the child ran no test named {test}: {stdout}"
    );
    let measured = stdout
        .lines()
        .find_map(|line| line.strip_prefix("MEASURED "))
        .unwrap_or_else(|| panic!("the child measured nothing: {stdout}"))
        .to_string();
    println!("{measured}");
    move |name: &str| {
        measured
            .split('\t')
            .find_map(|pair| pair.strip_prefix(name)?.strip_prefix('='))
            .unwrap_or_else(|| panic!("no {name} in {measured}"))
            .to_string()
    }
}
