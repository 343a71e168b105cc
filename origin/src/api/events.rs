//! Live updates as Server-Sent Events: `GET /api/v1/pushes/{id}/events` (one push) and
//! `GET /api/v1/events` (every push in progress).
//!
//! Each `push` event carries the whole `Push` JSON of `GET /pushes/{id}`, sent when it differs
//! from the last one sent on that stream: after any push or site change (coalesced over
//! [`COALESCE`]) and at least every [`TICK`] (states such as `waiting_window` move with the
//! clock). The first event of a stream is the current state. A one-push stream ends with an
//! `end` event (data: the final state) once the push is `complete`, `failed` or `cancelled`;
//! the all-pushes stream never ends. Comments keep idle connections open through proxies.

use std::collections::HashMap;
use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use tokio::sync::mpsc;

use super::{ApiError, ApiPath, ApiResult, AppState, ErrorBody};
use crate::db::{self, PushInfo};

/// How long changes are gathered into one round of events.
const COALESCE: Duration = Duration::from_millis(250);
/// The longest a stream goes without looking again.
const TICK: Duration = Duration::from_secs(1);

/// `GET /api/v1/pushes/{id}/events`.
#[utoipa::path(
    get,
    path = "/pushes/{id}/events",
    tag = "events",
    operation_id = "push_events",
    params(("id" = i64, Path, description = "Push id")),
    responses(
        (status = 200, description = "Server-Sent Events: `event: push` with the whole `PushInfo` \
            as data, first the current state, then whenever it changes; `event: end` with the \
            final `PushInfo` once it is `complete`, `failed` or `cancelled`, and the stream closes",
            body = String, content_type = "text/event-stream"),
        (status = 404, description = "`not_found`: no such push", body = ErrorBody),
    )
)]
pub(super) async fn push(
    State(core): State<AppState>,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult<Response> {
    if core
        .db
        .call(move |c| db::pushes::get(c, id))
        .await?
        .is_none()
    {
        return Err(ApiError::not_found(format!("push {id} not found")));
    }
    Ok(stream(core, Some(id)))
}

/// `GET /api/v1/events`.
#[utoipa::path(
    get,
    path = "/events",
    tag = "events",
    operation_id = "all_events",
    responses(
        (status = 200, description = "Server-Sent Events that never end: `event: push` (data: \
            `PushInfo`) for every push unfinished at some site, and each once more when it \
            finishes; a comment every 15 s keeps idle connections open",
            body = String, content_type = "text/event-stream"),
    )
)]
pub(super) async fn all(State(core): State<AppState>) -> Response {
    stream(core, None)
}

fn terminal(p: &PushInfo) -> bool {
    matches!(p.state, "complete" | "failed" | "cancelled")
}

fn stream(core: AppState, only: Option<i64>) -> Response {
    let (tx, mut rx) = mpsc::channel::<Event>(16);
    tokio::spawn(async move {
        let mut pushes = core.push_changes.subscribe();
        let mut sites = core.site_changes.subscribe();
        let mut sent: HashMap<i64, PushInfo> = HashMap::new();
        loop {
            let ids: Vec<i64> = match only {
                Some(id) => vec![id],
                None => {
                    let mut ids = match core.db.call(|c| db::pushes::unfinished(c)).await {
                        Ok(ids) => ids,
                        Err(e) => {
                            tracing::warn!(error = %e, "events: listing pushes failed");
                            Vec::new()
                        }
                    };
                    // Those that just finished get their last event too.
                    ids.extend(
                        sent.keys()
                            .filter(|k| !ids.contains(k))
                            .copied()
                            .collect::<Vec<_>>(),
                    );
                    ids
                }
            };
            for id in ids {
                let now = match core.db.call(move |c| db::pushes::get(c, id)).await {
                    Ok(p) => p,
                    Err(e) => {
                        tracing::warn!(error = %e, push = id, "events: reading a push failed");
                        continue;
                    }
                };
                let Some(mut p) = now else {
                    sent.remove(&id);
                    continue;
                };
                core.rates.annotate(&mut p); // a new rate is news too
                if sent.get(&id) != Some(&p) {
                    let Ok(ev) = Event::default().event("push").json_data(&p) else {
                        continue;
                    };
                    if tx.send(ev).await.is_err() {
                        return; // the client went away
                    }
                }
                let done = terminal(&p);
                if done && only.is_some() {
                    if let Ok(ev) = Event::default().event("end").json_data(&p) {
                        let _ = tx.send(ev).await;
                    }
                    return;
                }
                if done {
                    sent.remove(&id);
                } else {
                    sent.insert(id, p);
                }
            }
            tokio::select! {
                () = tx.closed() => return,
                r = pushes.changed() => if r.is_err() { return },
                r = sites.changed() => if r.is_err() { return },
                () = tokio::time::sleep(TICK) => {}
            }
            tokio::time::sleep(COALESCE).await;
            pushes.borrow_and_update();
            sites.borrow_and_update();
        }
    });
    let events =
        futures::stream::poll_fn(move |cx| rx.poll_recv(cx).map(|e| e.map(Ok::<_, Infallible>)));
    Sse::new(events)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response()
}
