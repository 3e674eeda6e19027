//! A client on tokio's runtime (epoll, non-blocking connect), for the
//! program matrix (tests/tests/matrix.rs): connects, writes a request,
//! half-closes, prints the reply. Usage: tfo-tokio-client HOST:PORT REQUEST
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::io::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let (address, request) = (&args[1], &args[2]);
    let mut stream = TcpStream::connect(address.as_str()).await?;
    stream.write_all(request.as_bytes()).await?;
    stream.shutdown().await?;
    let mut reply = String::new();
    stream.read_to_string(&mut reply).await?;
    println!("{}", reply.trim_end());
    Ok(())
}
