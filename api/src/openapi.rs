//! The OpenAPI description, generated from the handlers (`/openapi.json`), and the
//! Swagger UI served from the binary (`/docs/`, works offline).

use std::sync::OnceLock;

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::{admin, health, readers, registry};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "latch",
        description = "The event backbone of building access control: card readers post \
                       check-ins, check-outs, unlock requests, door alarms, heartbeats and \
                       what they buffered offline; administrators manage doors, holders, \
                       readers and grants and read the registry."
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
        admin::list_readers,
        admin::create_grant,
        admin::revoke_grant,
        admin::list_grants,
        registry::list_actions,
        registry::presence,
        health::healthz,
        health::readyz,
        crate::metrics::serve,
    ),
    modifiers(&BearerSchemes),
    tags(
        (name = "card readers", description = "Called by card readers with their reader key."),
        (name = "administration", description = "Called by administrators with an admin token."),
        (name = "registry", description = "The action log and the presence roll-call."),
        (name = "operations", description = "Health checks."),
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
                "An admin token (`lat_...`), issued by `latch admins add`",
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
    }
}
