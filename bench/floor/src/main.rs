//! The floor of `bench.sh --floor`: a ChatKit `threads.list` answered with the least work
//! a poem + sqlx server can do for it. It parses the body, reads the same 21 rows with the
//! gateway's statement on a kept connection (PostgreSQL or SQLite), and writes the same
//! JSON, with no authentication, no middleware, no logging and no metrics. What it serves
//! per CPU-second on this machine bounds what any gateway on this stack can.

use std::sync::{Arc, Mutex};

use chrono::{DateTime, SecondsFormat, Utc};
use clap::Parser;
use poem::{
    handler, http::StatusCode, listener::TcpListener, post, web::Data, EndpointExt, Response,
    Route, Server,
};
use sea_orm::sqlx::{
    self, postgres::PgConnection, sqlite::SqliteConnection, Connection as _, Row as _,
};
use serde::{Deserialize, Serialize};
use tokio::sync::Semaphore;

#[global_allocator]
static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// The gateway's statement for ChatKit's thread list, page size 20 (one more row says
/// whether there is more).
const SQL: &str = "SELECT id, title, created_at FROM threads WHERE user_id = $1 \
    ORDER BY created_at DESC, id DESC LIMIT $2";
const PAGE: usize = 20;

#[derive(Parser)]
struct Args {
    /// The gateway's database, migrated and seeded (`postgres://…` or `sqlite://…`).
    #[arg(long, env = "DATABASE_URL")]
    database_url: String,
    /// The user whose threads every request lists.
    #[arg(long)]
    user: String,
    #[arg(long, default_value = "127.0.0.1:18090")]
    listen: String,
    /// Connections kept for reads.
    #[arg(long, default_value_t = 4)]
    connections: usize,
}

struct Floor {
    user: String,
    idle: Mutex<Vec<Conn>>,
    permits: Semaphore,
}

enum Conn {
    Postgres(PgConnection),
    Sqlite(SqliteConnection),
}

enum Rows {
    Postgres(Result<Vec<sqlx::postgres::PgRow>, sqlx::Error>),
    Sqlite(Result<Vec<sqlx::sqlite::SqliteRow>, sqlx::Error>),
}

#[derive(Deserialize)]
struct Request {
    #[serde(rename = "type")]
    kind: String,
}

#[derive(Serialize)]
struct Page {
    data: Vec<Thread>,
    has_more: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    after: Option<String>,
}

#[derive(Serialize)]
struct Thread {
    id: String,
    title: String,
    created_at: String,
    status: Status,
    metadata: serde_json::Map<String, serde_json::Value>,
    items: Empty,
}

#[derive(Serialize)]
struct Status {
    #[serde(rename = "type")]
    kind: &'static str,
}

#[derive(Serialize)]
struct Empty {
    data: [(); 0],
    has_more: bool,
}

#[handler]
async fn chatkit(body: poem::Body, floor: Data<&Arc<Floor>>) -> Response {
    match answer(body, floor.0).await {
        Ok(json) => Response::builder()
            .content_type("application/json")
            .body(json),
        Err(status) => Response::builder().status(status).finish(),
    }
}

async fn answer(body: poem::Body, floor: &Floor) -> Result<Vec<u8>, StatusCode> {
    let bytes = body
        .into_bytes_limit(1 << 20)
        .await
        .map_err(|_| StatusCode::BAD_REQUEST)?;
    let request: Request = serde_json::from_slice(&bytes).map_err(|_| StatusCode::BAD_REQUEST)?;
    if request.kind != "threads.list" {
        return Err(StatusCode::NOT_FOUND);
    }
    let _permit = floor
        .permits
        .acquire()
        .await
        .map_err(|_| StatusCode::SERVICE_UNAVAILABLE)?;
    let mut conn = floor
        .idle
        .lock()
        .unwrap()
        .pop()
        .ok_or(StatusCode::SERVICE_UNAVAILABLE)?;
    let limit = i64::try_from(PAGE + 1).unwrap_or(i64::MAX);
    let rows = match &mut conn {
        Conn::Postgres(c) => Rows::Postgres(
            sqlx::query(SQL)
                .bind(floor.user.as_str())
                .bind(limit)
                .fetch_all(c)
                .await,
        ),
        Conn::Sqlite(c) => Rows::Sqlite(
            sqlx::query(SQL)
                .bind(floor.user.as_str())
                .bind(limit)
                .fetch_all(c)
                .await,
        ),
    };
    floor.idle.lock().unwrap().push(conn);
    // The same decoding for either database's rows.
    macro_rules! threads {
        ($rows:expr) => {{
            let rows = $rows.map_err(|_| StatusCode::SERVICE_UNAVAILABLE)?;
            let mut data = Vec::with_capacity(rows.len());
            for row in rows.iter().take(PAGE) {
                let created_at: DateTime<Utc> = row
                    .try_get_unchecked(2)
                    .map_err(|_| StatusCode::BAD_GATEWAY)?;
                data.push(Thread {
                    id: row
                        .try_get_unchecked(0)
                        .map_err(|_| StatusCode::BAD_GATEWAY)?,
                    title: row
                        .try_get_unchecked(1)
                        .map_err(|_| StatusCode::BAD_GATEWAY)?,
                    created_at: created_at.to_rfc3339_opts(SecondsFormat::Micros, true),
                    status: Status { kind: "active" },
                    metadata: serde_json::Map::new(),
                    items: Empty {
                        data: [],
                        has_more: false,
                    },
                });
            }
            (rows.len(), data)
        }};
    }
    let (rows, data) = match rows {
        Rows::Postgres(rows) => threads!(rows),
        Rows::Sqlite(rows) => threads!(rows),
    };
    let has_more = rows > PAGE;
    let after = has_more
        .then(|| data.last().map(|t| t.id.clone()))
        .flatten();
    serde_json::to_vec(&Page {
        data,
        has_more,
        after,
    })
    .map_err(|_| StatusCode::INTERNAL_SERVER_ERROR)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let mut idle = Vec::with_capacity(args.connections);
    for _ in 0..args.connections {
        idle.push(if args.database_url.starts_with("sqlite:") {
            Conn::Sqlite(SqliteConnection::connect(&args.database_url).await?)
        } else {
            Conn::Postgres(PgConnection::connect(&args.database_url).await?)
        });
    }
    let floor = Arc::new(Floor {
        user: args.user,
        idle: Mutex::new(idle),
        permits: Semaphore::new(args.connections),
    });
    let app = Route::new().at("/chatkit", post(chatkit)).data(floor);
    Server::new(TcpListener::bind(args.listen))
        .run_with_graceful_shutdown(
            app,
            async {
                let _ = tokio::signal::ctrl_c().await;
            },
            None,
        )
        .await?;
    Ok(())
}
