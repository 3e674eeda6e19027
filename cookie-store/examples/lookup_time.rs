//! Times `cookie_store::lookup` (one netlink round trip to the kernel's
//! metrics cache). Usage: lookup_time DESTINATION [SOURCE] [ITERATIONS]
use std::net::IpAddr;
use std::time::Instant;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let dest: IpAddr = args.get(1).expect("usage: lookup_time DESTINATION [SOURCE] [N]").parse().unwrap();
    let source: Option<IpAddr> = args.get(2).map(|s| s.parse().unwrap());
    let n: u32 = args.get(3).map_or(10000, |s| s.parse().unwrap());
    let first = cookie_store::lookup(dest, source);
    let start = Instant::now();
    for _ in 0..n {
        let _ = cookie_store::lookup(dest, source);
    }
    println!("{:?}\nlookup: {:.2} us", first, start.elapsed().as_secs_f64() * 1e6 / n as f64);
}
