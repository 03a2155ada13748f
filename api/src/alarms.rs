//! `GET /v1/alarms`: what is in alarm now, for the guard desk — doors forced or held open
//! and readers tampered with until their restore arrives, readers offline until heard from
//! again, and recent offline decisions the server disputed.

use actix_web::{HttpResponse, get, web};
use deadpool_postgres::Pool;
use latch_core::credentials::Scope;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::auth::Admin;
use crate::error::{ApiError, ErrorBody};
use crate::timestamp::Timestamp;

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct AlarmFilter {
    /// Only this site (else every site the token may read).
    pub site: Option<String>,
    /// Disputed offline decisions recorded at or after this time (RFC 3339; default: the
    /// last 24 hours). They have no restore: they are listed for this long.
    #[serde(default)]
    #[param(value_type = Option<String>, format = DateTime)]
    pub disputed_since: Option<Timestamp>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Alarm {
    /// `door_forced_open`, `door_held_open`, `reader_tamper`, `reader_offline` or
    /// `offline_decision_disputed`.
    pub kind: String,
    pub site: String,
    pub door_id: Uuid,
    pub door_name: String,
    pub reader_id: Option<Uuid>,
    /// The action that raised it (absent for a reader offline: the reader's own state).
    pub action_id: Option<Uuid>,
    /// Since when.
    #[serde(with = "crate::timestamp::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub since: OffsetDateTime,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Alarms {
    /// Oldest first.
    pub alarms: Vec<Alarm>,
}

/// Door and reader alarms open now, oldest first.
#[utoipa::path(
    tag = "registry",
    params(AlarmFilter),
    responses(
        (status = 200, body = Alarms),
        (status = 400, description = "Invalid time", body = ErrorBody),
        (status = 403, description = "Not `registry:read`, or a site the token does not cover", body = ErrorBody),
        (status = 422, description = "Invalid site name", body = ErrorBody),
    ),
    security(("admin_token" = []))
)]
#[get("/v1/alarms")]
pub async fn alarms(
    pool: web::Data<Pool>,
    admin: Admin,
    filter: web::Query<AlarmFilter>,
) -> Result<HttpResponse, ApiError> {
    admin.require(Scope::RegistryRead)?;
    let filter = filter.into_inner();
    if let Some(site) = &filter.site {
        crate::admin::check_site(site)?;
        admin.require_site(site)?;
    }
    let disputed_since = Timestamp::checked_opt(filter.disputed_since, "disputed_since")?
        .unwrap_or_else(|| OffsetDateTime::now_utc() - time::Duration::days(1));
    let rows = pool
        .get()
        .await?
        .query(
            // Per door and alarm, the latest of the alarm and its restore (from the partial
            // index actions_alarms); open when it is the alarm.
            "WITH scope AS (
                 SELECT id, site, name FROM doors
                 WHERE ($1::text IS NULL OR site = $1)
                   AND ($2::text[] IS NULL OR site = ANY ($2))
             ), pairs (raised, restored) AS (
                 VALUES ('door_forced_open', 'door_forced_open_restored'),
                        ('door_held_open', 'door_held_open_restored'),
                        ('reader_tamper', 'reader_tamper_restored')
             )
             SELECT latest.kind, d.site, d.id AS door_id, d.name AS door_name,
                    latest.reader_id, latest.id AS action_id, latest.occurred_at AS since
             FROM scope d CROSS JOIN pairs p
             CROSS JOIN LATERAL (
                 SELECT a.id, a.kind, a.reader_id, a.occurred_at FROM actions a
                 WHERE a.door_id = d.id AND a.kind IN (p.raised, p.restored)
                 ORDER BY a.recorded_at DESC LIMIT 1
             ) latest
             WHERE latest.kind = p.raised
             UNION ALL
             SELECT 'reader_offline', d.site, d.id, d.name, r.id, NULL,
                    COALESCE(r.last_seen_at, r.created_at)
             FROM readers r JOIN scope d ON d.id = r.door_id
             WHERE r.enabled AND NOT r.online
             UNION ALL
             SELECT a.kind, d.site, d.id, d.name, a.reader_id, a.id, a.occurred_at
             FROM actions a JOIN scope d ON d.id = a.door_id
             WHERE a.kind = 'offline_decision_disputed' AND a.recorded_at >= $3
             ORDER BY since, door_id",
            &[&filter.site, &admin.sites, &disputed_since],
        )
        .await?;
    let alarms = rows
        .iter()
        .map(|row| Alarm {
            kind: row.get("kind"),
            site: row.get("site"),
            door_id: row.get("door_id"),
            door_name: row.get("door_name"),
            reader_id: row.get("reader_id"),
            action_id: row.get("action_id"),
            since: row.get("since"),
        })
        .collect();
    Ok(HttpResponse::Ok().json(Alarms { alarms }))
}
