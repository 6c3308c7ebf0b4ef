//! The gateway's HTTP stack with none of the gateway: the same per-core runtimes, axum router and
//! pooled upstream client (`gateway::forward`), forwarding every request unchanged. `bench/gateway_http.sh`
//! runs it next to nginx and Gatehouse to show how much of the gap to nginx is the stack itself.
//!
//! Usage: stack_floor LISTEN UPSTREAM_AUTHORITY   (e.g. 127.0.0.1:9000 127.0.0.1:9001)

use std::time::Duration;

use axum::extract::Request;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use gatehouse_server::gateway::forward;

fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let (Some(listen), Some(upstream)) = (args.next(), args.next()) else {
        eprintln!("usage: stack_floor LISTEN UPSTREAM_AUTHORITY");
        std::process::exit(2);
    };
    let listener = std::net::TcpListener::bind(&listen)?;
    let threads = std::thread::available_parallelism().map_or(1, usize::from);
    let make_router = || {
        let client = forward::client();
        let upstream = upstream.clone();
        axum::Router::new().fallback(move |req: Request| {
            let client = client.clone();
            let upstream = upstream.clone();
            async move {
                let pq = req.uri().path_and_query().map_or("/".to_owned(), |p| p.as_str().to_owned());
                match forward::forward(
                    &client,
                    &upstream,
                    &pq,
                    req,
                    false,
                    Duration::from_secs(30),
                    Duration::from_secs(60),
                )
                .await
                {
                    Ok(resp) => resp,
                    Err(_) => StatusCode::BAD_GATEWAY.into_response(),
                }
            }
        })
    };
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async {
        let mut servers = gatehouse_server::percore::serve(
            make_router,
            listener,
            gatehouse_server::listener::ConnectionGate::new(Default::default()),
            threads,
            Duration::from_secs(1),
            || async {
                // Runs until killed (SIGTERM): the benchmark script starts it in the background.
                match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                    Ok(mut term) => {
                        term.recv().await;
                    }
                    Err(_) => std::future::pending::<()>().await,
                }
            },
        )?;
        let result = servers.stopped().await;
        servers.close();
        result
    })
}
