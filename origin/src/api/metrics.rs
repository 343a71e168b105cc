//! `/metrics`: Prometheus text.

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use sitecast_runtime::prom::{Prom, CONTENT_TYPE};

use super::{ApiResult, AppState};
use crate::db;

/// `GET /metrics`.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "meta",
    operation_id = "metrics",
    security(()),
    responses((status = 200, description = "Prometheus text exposition: \
        `sitecast_origin_sent_bytes_total{site,kind}`, nodes, artifacts, blobs, OCI figures",
        body = String, content_type = "text/plain; version=0.0.4"))
)]
pub(super) async fn metrics(State(core): State<AppState>) -> ApiResult<Response> {
    core.flush_accounting().await?;
    let (sites, (totals, oci)) = core
        .db
        .call(|c| {
            Ok((
                db::sites::metrics(c)?,
                (db::artifacts::totals(c)?, db::oci::totals(c)?),
            ))
        })
        .await?;
    let mut p = Prom::new();
    for (site, payload, framing, ..) in &sites {
        p.counter(
            "sitecast_origin_sent_bytes_total",
            "Bytes written to a site's QUIC streams: chunk payload or framing (headers, ids, control and recipe frames).",
            &[("site", site), ("kind", "payload")],
            *payload,
        );
        p.counter(
            "sitecast_origin_sent_bytes_total",
            "Bytes written to a site's QUIC streams: chunk payload or framing (headers, ids, control and recipe frames).",
            &[("site", site), ("kind", "framing")],
            *framing,
        );
    }
    for (site, _, _, online, total) in &sites {
        p.gauge(
            "sitecast_origin_nodes_online",
            "Nodes of a site connected now.",
            &[("site", site)],
            *online as f64,
        );
        p.gauge(
            "sitecast_origin_nodes",
            "Nodes enrolled in a site.",
            &[("site", site)],
            *total as f64,
        );
    }
    p.gauge(
        "sitecast_origin_artifacts",
        "Published artifacts.",
        &[],
        totals.0 as f64,
    );
    p.gauge(
        "sitecast_origin_blobs",
        "Stored blobs.",
        &[],
        totals.1 as f64,
    );
    p.gauge(
        "sitecast_origin_blob_bytes",
        "Total length of stored blobs.",
        &[],
        totals.2 as f64,
    );
    p.gauge(
        "sitecast_origin_oci_repositories",
        "OCI repositories holding a blob or a manifest.",
        &[],
        oci.0 as f64,
    );
    p.gauge(
        "sitecast_origin_oci_manifests",
        "Stored OCI manifests and indexes.",
        &[],
        oci.1 as f64,
    );
    p.gauge("sitecast_origin_oci_tags", "OCI tags.", &[], oci.2 as f64);
    core.rate_limits.write_metrics(&mut p);
    Ok(([(header::CONTENT_TYPE, CONTENT_TYPE)], p.finish()).into_response())
}
