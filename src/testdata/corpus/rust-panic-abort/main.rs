// rust-panic-abort: built with -C panic=abort -C force-unwind-tables=yes
// -C debuginfo=2 -C opt-level=1. validate::<i64>() (a generic function) runs a
// closure over every reading; the closure panics on the third one. With
// panic=abort the panic ends in libc abort() (SIGABRT). A second thread
// ("waiter") is blocked in a channel receive. Prints "pid=N".
use std::fmt::Debug;
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

struct Reading<T> {
    id: u32,
    value: T,
}

#[inline(never)]
fn validate<T: PartialOrd + Debug + Copy>(readings: &[Reading<T>], limit: T) -> usize {
    readings
        .iter()
        .filter(|r| {
            if r.value > limit {
                panic!("reading {} = {:?} is over the limit {:?}", r.id, r.value, limit);
            }
            true
        })
        .count()
}

#[inline(never)]
fn process_batch(batch: &[Reading<i64>]) -> usize {
    // not a tail call, so process_batch keeps its frame
    validate(batch, 100) + batch.len()
}

#[inline(never)]
fn run() -> usize {
    let batch: Vec<Reading<i64>> = (0..5)
        .map(|i| Reading { id: i, value: 40 * i as i64 })
        .collect();
    process_batch(&batch)
}

fn main() {
    println!("pid={}", std::process::id());
    let (ready_tx, ready_rx) = mpsc::channel::<()>();
    let (_block_tx, block_rx) = mpsc::channel::<()>();
    thread::Builder::new()
        .name("waiter".into())
        .stack_size(64 * 1024)
        .spawn(move || {
            ready_tx.send(()).unwrap();
            let _ = block_rx.recv();
        })
        .unwrap();
    ready_rx.recv().unwrap();
    thread::sleep(Duration::from_millis(200));
    std::process::exit(run() as i32);
}
