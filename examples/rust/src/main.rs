//! Example crash in Rust: a set point that is not a number reaches `.expect()`, which panics;
//! with panic=abort the process aborts (SIGABRT).

#[inline(never)]
fn parse_setpoint(text: &str) -> f64 {
    text.trim()
        .parse::<f64>()
        .expect("set point must be a number")
}

#[inline(never)]
fn apply_schedule(entries: &[&str]) -> f64 {
    let mut total = 0.0;
    for e in entries {
        total += parse_setpoint(e);
    }
    total / entries.len() as f64
}

fn main() {
    let schedule = std::env::args().skip(1).collect::<Vec<_>>();
    let entries: Vec<&str> = if schedule.is_empty() {
        vec!["21.5", "19.0", "twenty"]
    } else {
        schedule.iter().map(|s| s.as_str()).collect()
    };
    println!("average set point {}", apply_schedule(&entries));
}
