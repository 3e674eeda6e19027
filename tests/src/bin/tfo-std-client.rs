//! A client written with nothing but Rust's standard library, for the
//! real-program tests: connects, writes a request, half-closes, prints the
//! reply. Usage: tfo-std-client HOST:PORT REQUEST [COUNT]
use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (address, request) = (&args[1], &args[2]);
    let count: usize = args.get(3).map_or(1, |c| c.parse().expect("count"));
    for _ in 0..count {
        let mut stream = TcpStream::connect(address).expect("connect");
        stream.write_all(request.as_bytes()).expect("write");
        stream.shutdown(Shutdown::Write).expect("shutdown");
        let mut reply = String::new();
        stream.read_to_string(&mut reply).expect("read");
        println!("{}", reply.trim_end());
    }
}
