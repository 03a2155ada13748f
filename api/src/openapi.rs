//! The OpenAPI description, generated from the handlers (`/openapi.json`), and the
//! Swagger UI served from the binary (`/docs/`, works offline).

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
