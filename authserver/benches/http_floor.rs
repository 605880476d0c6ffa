//! The floor of a cached-document request on this machine: axum on hyper and tokio with
//! one route that answers stored bytes — no tenant routing, middleware, metrics or log
//! line. `benches/load.sh` serves the server's own JWK Set with it and drives it with
//! the same `wrk` settings as the real endpoints, so the difference between the two
//! rows is what Gatehouse adds to discovery and JWKS; the rest is hyper and the
//! kernel's loopback TCP, which no server avoids.
//!
//! `cargo bench -p authserver --bench http_floor -- <listen address> <body file>`:
//! serves until killed. Same worker count as `serve` (one per core).

use axum::body::Bytes;
use axum::http::header;
use axum::routing::get;

fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1).filter(|a| a != "--bench");
    let (Some(listen), Some(body)) = (args.next(), args.next()) else {
        eprintln!("usage: http_floor <listen address> <body file>");
        std::process::exit(2);
    };
    let body = Bytes::from(std::fs::read(body)?);
    let app = axum::Router::new().route(
        "/jwks",
        get(move || {
            let body = body.clone();
            async move { ([(header::CONTENT_TYPE, "application/jwk-set+json")], body) }
        }),
    );
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(async move {
            let listener = tokio::net::TcpListener::bind(&listen).await?;
            axum::serve(listener, app).await
        })
}
