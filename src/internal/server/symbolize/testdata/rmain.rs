// Rust fixture: #[inline(always)] helpers, a generic, a trait impl and a closure.
use std::fmt;

struct Meters(u64);

impl fmt::Display for Meters {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}m", self.0)
    }
}

#[inline(always)]
fn leaf(x: u64) -> u64 {
    let y = x.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    y ^ (y >> 29)
}

#[inline(always)]
fn mid(x: u64) -> u64 {
    leaf(x) + leaf(x + 1)
}

#[inline(never)]
fn work<T: Into<u64> + Copy>(v: &[T]) -> u64 {
    v.iter().map(|e| mid((*e).into())).fold(0, |a, b| a ^ b)
}

#[inline(never)]
fn crash(v: &[u32], i: usize) -> u64 {
    let m = Meters(work(v));
    println!("{}", m);
    v[i] as u64
}

fn main() {
    let v: Vec<u32> = std::env::args().map(|a| a.len() as u32).collect();
    let w: Vec<u8> = vec![1, 2, 3];
    println!("{} {}", work(&w), crash(&v, 0));
}
