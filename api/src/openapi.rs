//! The OpenAPI description, generated from the handlers (`/openapi.json`), and the
//! Swagger UI served from the binary (`/docs/`, works offline).

use std::sync::OnceLock;

use utoipa::openapi::path::{Operation, Parameter, PathItem};
use utoipa::openapi::schema::{Object, Schema};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, Ref, RefOr, ResponseBuilder};
use utoipa::{Modify, OpenApi};

use crate::{admin, feed, health, readers, registry, session};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "latch",
        description = "The event backbone of building access control: card readers post \
                       check-ins, check-outs, unlock requests, door alarms, heartbeats and \
                       what they buffered offline; administrators manage doors, holders, \
                       readers and grants and read the registry; integrators read the event \
                       feed from a cursor or live (Server-Sent Events)."
    ),
    paths(
        readers::unlock::unlock,
        readers::presence::check_in,
        readers::presence::check_out,
        readers::alarm::alarm,
        readers::batch::upload,
        readers::heartbeat::heartbeat,
        readers::gaps::gaps,
        admin::create_door,
        admin::list_doors,
        admin::create_holder,
        admin::update_holder,
        admin::list_holders,
        admin::enrol_reader,
        admin::disable_reader,
        admin::rotate_reader_key,
        admin::list_readers,
        admin::create_grant,
        admin::revoke_grant,
        admin::list_grants,
        admin::create_endpoint,
        admin::list_endpoints,
        admin::get_endpoint,
        admin::update_endpoint,
        admin::delete_endpoint,
        admin::rotate_endpoint_secret,
        admin::list_attempts,
        admin::endpoint_stats,
        admin::recover_endpoint,
        admin::list_dead_letters,
        admin::show_dead_letter,
        admin::replay_dead_letters,
        admin::purge_dead_letters,
        admin::pipeline_status,
        registry::list_actions,
        registry::presence,
        registry::presence_csv,
        registry::mark_safe,
        crate::alarms::alarms,
        feed::pull::list,
        feed::sse::stream,
        session::create,
        session::end,
        health::healthz,
        health::readyz,
        crate::metrics::serve,
    ),
    components(schemas(readers::batch::BatchEvent)),
    modifiers(&BearerSchemes, &CommonErrors, &Limits),
    tags(
        (name = "card readers", description = "Called by card readers with their reader key."),
        (name = "administration", description = "Called by administrators with an admin token."),
        (name = "webhooks", description = "Webhook endpoints: integrators' subscriptions, each with its own URL, filter, secret and failures (an `admin` token for every site)."),
        (name = "dead letters", description = "Events a sink refused or kept failing: list, show, replay under the stale-replay guard, purge (an `admin` token for every site)."),
        (name = "registry", description = "The action log and the presence roll-call."),
        (name = "events", description = "The event stream read from a cursor, and followed live (Server-Sent Events)."),
        (name = "sessions", description = "A token exchanged for a cookie, for browsers (changes also need the session's CSRF token in X-CSRF-Token)."),
        (name = "operations", description = "Health checks, and the pipeline's backlogs."),
    )
)]
pub struct ApiDoc;

/// A served path (its template split at `/`, `{...}` standing for one segment) and its
/// methods.
type Route = (Vec<String>, Vec<&'static str>);

/// The methods a served path takes, `None` for a path the API does not serve. Read once
/// from this document, so that it cannot disagree with the routes it describes; the
/// document and its viewer (`/openapi.json`, `/docs/...`) are added by hand.
pub fn methods_of(path: &str) -> Option<Vec<&'static str>> {
    static ROUTES: OnceLock<Vec<Route>> = OnceLock::new();
    let routes = ROUTES.get_or_init(|| {
        let mut routes: Vec<Route> = ApiDoc::openapi()
            .paths
            .paths
            .iter()
            .map(|(template, item)| {
                let methods = [
                    ("GET", item.get.is_some()),
                    ("POST", item.post.is_some()),
                    ("PUT", item.put.is_some()),
                    ("PATCH", item.patch.is_some()),
                    ("DELETE", item.delete.is_some()),
                ]
                .into_iter()
                .filter_map(|(method, served)| served.then_some(method))
                .collect();
                (template.split('/').map(str::to_owned).collect(), methods)
            })
            .collect();
        routes.push((vec![String::new(), "openapi.json".into()], vec!["GET"]));
        routes
    });
    if path.starts_with("/docs/") {
        return Some(vec!["GET"]);
    }
    let segments: Vec<&str> = path.split('/').collect();
    routes
        .iter()
        .find(|(template, _)| {
            template.len() == segments.len()
                && template.iter().zip(&segments).all(|(t, s)| {
                    t == s || (t.starts_with('{') && t.ends_with('}') && !s.is_empty())
                })
        })
        .map(|(_, methods)| methods.clone())
}

/// The operations of a path, as this API uses them.
fn operations_mut(item: &mut PathItem) -> impl Iterator<Item = &mut Operation> {
    [
        &mut item.get,
        &mut item.post,
        &mut item.put,
        &mut item.patch,
        &mut item.delete,
    ]
    .into_iter()
    .flatten()
}

struct BearerSchemes;

impl Modify for BearerSchemes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        for (name, what) in [
            (
                "reader_key",
                "A reader key (`lrk_...`), issued at enrolment",
            ),
            (
                "admin_token",
                "A token (`lat_...`), issued by `latch admins add` with scopes, an optional site list and an optional expiry",
            ),
        ] {
            components.add_security_scheme(
                name,
                SecurityScheme::Http(
                    HttpBuilder::new()
                        .scheme(HttpAuthScheme::Bearer)
                        .description(Some(what))
                        .build(),
                ),
            );
        }
        components.add_security_scheme(
            "session",
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::with_description(
                crate::auth::SESSION_COOKIE,
                "The cookie `POST /v1/sessions` sets; it authenticates reading (GET) requests only",
            ))),
        );
    }
}

/// The error answers any operation can give, added to each where its own description does
/// not already name them, so that the document lists every status the API really answers:
/// those of the shared machinery (authentication, body and parameter parsing, validation,
/// the database) rather than of one handler.
struct CommonErrors;

impl Modify for CommonErrors {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        for (path, item) in openapi.paths.paths.iter_mut() {
            if !path.starts_with("/v1/") {
                continue;
            }
            for operation in operations_mut(item) {
                add_common_errors(operation);
            }
        }
    }
}

fn add_common_errors(operation: &mut Operation) {
    let mut common = vec![
        (
            "400",
            "Malformed: the body, a path segment or a query parameter cannot be read (`malformed_body`, `unknown_field`, `invalid_path`, `invalid_query`, ...)",
        ),
        (
            "422",
            "Well-formed but invalid: a field out of its range (`invalid_timestamp`, `invalid_field`, ...)",
        ),
        ("500", "An internal error; logged, never detailed here"),
        (
            "503",
            "The database is unreachable or did not answer in time (`Retry-After`)",
        ),
    ];
    if operation.security.is_some() {
        common.push(("401", "No credential, an unknown, disabled, revoked or expired one, or more than one `Authorization` header"));
        common.push(("403", "The wrong kind of credential (an admin token on a reader endpoint, a reader key on an admin endpoint), a token without the scope the operation needs (`insufficient_scope`), or one not for the site it touches (`site_not_allowed`)"));
        common.push(("429", "Too many requests from this credential, or too many failed authentications from this address (`rate_limited`, `Retry-After`)"));
    }
    if operation.request_body.is_some() {
        common.push((
            "413",
            "The body is larger than the limit (`body_too_large`)",
        ));
        common.push((
            "415",
            "The body is not `application/json` (`unsupported_media_type`)",
        ));
    }
    for (status, description) in common {
        operation
            .responses
            .responses
            .entry(status.to_owned())
            .or_insert_with(|| {
                RefOr::T(
                    ResponseBuilder::new()
                        .description(description)
                        .content(
                            "application/json",
                            ContentBuilder::new()
                                .schema(Some(Ref::from_schema_name("ErrorBody")))
                                .build(),
                        )
                        .build(),
                )
            });
    }
}

/// Characters that are not control characters (what `char::is_control` refuses).
const PRINTABLE: &str = r"[^\u0000-\u001F\u007F-\u009F]";
/// Printable and not white space (`char::is_whitespace`, spelled out so that every regex
/// dialect reads it alike).
const VISIBLE: &str =
    r"[^\u0000-\u0020\u007F-\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000]";

/// The limits the handlers enforce, declared where a client reads them: which inputs are
/// valid is then the same question for the document and for the API. A field is listed by
/// its schema and name, a parameter by its name (and path where it differs).
struct Limits;

/// One field's limit.
#[derive(Clone, Copy)]
enum Limit {
    /// 1 to `max` printable characters (a card id as a reader sends it).
    Printable(usize),
    /// 1 to `max` printable characters, not all white space (names).
    Text(usize),
    /// A site name.
    Site,
    /// A whole number from `min` to `max`.
    Range(i64, i64),
}

impl Limit {
    fn apply(self, object: &mut Object) {
        match self {
            Limit::Printable(max) => {
                object.min_length = Some(1);
                object.max_length = Some(max);
                object.pattern = Some(format!("^{PRINTABLE}+$"));
            }
            Limit::Text(max) => {
                object.min_length = Some(1);
                object.max_length = Some(max);
                object.pattern = Some(format!("^{PRINTABLE}*{VISIBLE}{PRINTABLE}*$"));
            }
            Limit::Site => {
                object.pattern = Some(crate::admin::SITE_PATTERN.to_owned());
            }
            Limit::Range(min, max) => {
                object.minimum = Some(utoipa::Number::Int(min as isize));
                object.maximum = Some(utoipa::Number::Int(max as isize));
            }
        }
    }
}

const CARD_ID: Limit = Limit::Printable(128);
const NAME: Limit = Limit::Text(200);
const SEQ: Limit = Limit::Range(0, i64::MAX);

/// (schema, property, limit)
const FIELDS: &[(&str, &str, Limit)] = &[
    ("UnlockRequest", "card_id", CARD_ID),
    ("UnlockRequest", "seq", SEQ),
    ("PresenceRequest", "card_id", CARD_ID),
    ("PresenceRequest", "seq", SEQ),
    ("AlarmRequest", "seq", SEQ),
    ("BatchEvent", "card_id", CARD_ID),
    ("BatchEvent", "seq", SEQ),
    ("NewDoor", "site", Limit::Site),
    ("NewDoor", "name", NAME),
    ("NewHolder", "card_id", Limit::Text(128)),
    ("NewHolder", "name", NAME),
    ("HolderChange", "name", NAME),
    (
        "NewReader",
        "offline_after_secs",
        Limit::Range(1, crate::admin::MAX_OFFLINE_AFTER_SECS),
    ),
    ("NewReader", "name", NAME),
    (
        "KeyRotation",
        "grace_secs",
        Limit::Range(0, crate::admin::MAX_GRACE_SECS),
    ),
    (
        "SecretRotation",
        "grace_secs",
        Limit::Range(0, crate::admin::MAX_GRACE_SECS),
    ),
    (
        "NewEndpoint",
        "rate_per_second",
        Limit::Range(1, crate::admin::MAX_RATE as i64),
    ),
    (
        "EndpointChange",
        "rate_per_second",
        Limit::Range(1, crate::admin::MAX_RATE as i64),
    ),
    (
        "NewEndpoint",
        "description",
        Limit::Text(crate::admin::MAX_DESCRIPTION),
    ),
    (
        "EndpointChange",
        "description",
        Limit::Text(crate::admin::MAX_DESCRIPTION),
    ),
];

/// (path, or "" for any; parameter; limit)
const PARAMETERS: &[(&str, &str, Limit)] = &[
    (
        "/v1/actions",
        "limit",
        Limit::Range(1, crate::registry::MAX_PAGE),
    ),
    (
        "/v1/readers/{id}/gaps",
        "limit",
        Limit::Range(1, crate::readers::gaps::MAX_GAPS),
    ),
    (
        "/v1/events",
        "limit",
        Limit::Range(1, crate::feed::pull::MAX_LIMIT as i64),
    ),
    (
        "/v1/webhooks/endpoints/{id}/attempts",
        "limit",
        Limit::Range(1, crate::admin::MAX_ATTEMPTS_PAGE),
    ),
    ("", "site", Limit::Site),
];

impl Modify for Limits {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        if let Some(components) = openapi.components.as_mut() {
            for (schema, property, limit) in FIELDS {
                let field = components.schemas.get_mut(*schema).and_then(|s| match s {
                    RefOr::T(Schema::Object(object)) => object.properties.get_mut(*property),
                    _ => None,
                });
                match field {
                    Some(RefOr::T(Schema::Object(object))) => limit.apply(object),
                    _ => panic!("no field {schema}.{property} to declare a limit on"),
                }
            }
            // A change must change something.
            if let Some(RefOr::T(Schema::Object(change))) =
                components.schemas.get_mut("HolderChange")
            {
                change.min_properties = Some(1);
            }
        }
        for (path, item) in openapi.paths.paths.iter_mut() {
            for operation in operations_mut(item) {
                for parameter in operation.parameters.iter_mut().flatten() {
                    if let RefOr::T(parameter) = parameter {
                        limit_parameter(path, parameter);
                    }
                }
            }
        }
    }
}

fn limit_parameter(path: &str, parameter: &mut Parameter) {
    let object = match parameter.schema.as_mut() {
        Some(RefOr::T(Schema::Object(object))) => object,
        _ => return,
    };
    if parameter.name == crate::idempotency::HEADER {
        object.pattern = Some(crate::idempotency::KEY_PATTERN.to_owned());
        return;
    }
    if path == "/v1/actions" && parameter.name == "kind" {
        object.enum_values = Some(
            latch_core::event::EventKind::ALL
                .iter()
                .map(|kind| kind.as_str().into())
                .collect(),
        );
        return;
    }
    for (on, name, limit) in PARAMETERS {
        if (on.is_empty() || *on == path) && parameter.name == *name {
            limit.apply(object);
        }
    }
}
