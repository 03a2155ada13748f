//! What every live reader post shares: [`ReaderPost`], the extractor (the request, the
//! reader key it presents, the API's state), and [`ReaderPost::record`], the one way a live
//! event is recorded.
//!
//! Recording: without a `seq` and without an `Idempotency-Key` the event's statement runs
//! on its own — one statement, one round trip, the hot path. With either, the same
//! statement runs inside the transaction of [`seq::run_guarded`], which claims the key
//! and/or the seq first and answers a replay from what it stored. Either way the reader is
//! noted as seen ([`LastSeen`]) and a statement that found no reader for the key becomes
//! the right 401 or 403 ([`reader_rejection`]).

use actix_web::dev::Payload;
use actix_web::http::StatusCode;
use actix_web::{FromRequest, HttpRequest, HttpResponse, web};
use deadpool_postgres::{GenericClient, Pool};
use futures::future::{Either, LocalBoxFuture, Ready, ready};
use serde::Serialize;
use uuid::Uuid;

use crate::auth::{ReaderKey, reader_rejection};
use crate::config::ApiConfig;
use crate::error::ApiError;
use crate::idempotency::{Keyed, StoredResponse};
use crate::metrics::ApiMetrics;
use crate::readers::heartbeat::LastSeen;
use crate::readers::seq::{self, Recorded, SeqClaim};
use crate::trace::TraceParent;

/// A live reader post: the request, the reader key it presents, and the API's state. One
/// extractor, so that a handler's signature names only its own body.
pub struct ReaderPost {
    pub req: HttpRequest,
    pub key: ReaderKey,
    pub pool: web::Data<Pool>,
    pub metrics: web::Data<ApiMetrics>,
    pub config: web::Data<ApiConfig>,
    pub last_seen: web::Data<LastSeen>,
}

impl FromRequest for ReaderPost {
    type Error = ApiError;
    type Future =
        Either<Ready<Result<Self, ApiError>>, LocalBoxFuture<'static, Result<Self, ApiError>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        fn state<T: 'static>(req: &HttpRequest) -> Result<web::Data<T>, ApiError> {
            req.app_data::<web::Data<T>>().cloned().ok_or_else(|| {
                ApiError::internal(anyhow::anyhow!(
                    "{} is not part of the application",
                    std::any::type_name::<T>()
                ))
            })
        }
        fn post(req: &HttpRequest, key: ReaderKey) -> Result<ReaderPost, ApiError> {
            Ok(ReaderPost {
                req: req.clone(),
                key,
                pool: state(req)?,
                metrics: state(req)?,
                config: state(req)?,
                last_seen: state(req)?,
            })
        }
        match ReaderKey::from_request(req, payload) {
            Either::Left(key) => {
                Either::Left(ready(key.into_inner().and_then(|key| post(req, key))))
            }
            // A refusal held for a while (see `crate::limits`).
            Either::Right(later) => {
                let req = req.clone();
                Either::Right(Box::pin(async move { post(&req, later.await?) }))
            }
        }
    }
}

/// What a reader statement did.
pub(crate) enum Statement<T> {
    /// Recorded: the answer, for which reader, under which action.
    Recorded {
        reader_id: Uuid,
        action_id: Uuid,
        answer: T,
    },
    /// No enabled reader has the key.
    UnknownReader,
    /// The reader is known; the event is refused (an unknown card, a deactivated holder).
    Refused { reader_id: Uuid, error: ApiError },
}

/// An event a reader posts live, as the one SQL statement that authenticates the reader
/// and records it.
pub(crate) trait ReaderStatement {
    type Answer: Serialize;
    /// The status a recorded event answers.
    const STATUS: StatusCode;

    async fn run(
        &self,
        db: &impl GenericClient,
        key: &ReaderKey,
    ) -> Result<Statement<Self::Answer>, ApiError>;
}

impl ReaderPost {
    /// The request's trace context, continued (or a new one), as stored with the action.
    pub fn trace(&self) -> String {
        TraceParent::for_request(&self.req).to_string()
    }

    /// Records `statement` (see the module doc); `body` is what an `Idempotency-Key` is
    /// checked against. Answers the response and, when this request recorded the event
    /// (not a replay), its answer.
    pub(crate) async fn record<S: ReaderStatement>(
        &self,
        statement: &S,
        body: &impl Serialize,
        seq: Option<SeqClaim>,
    ) -> Result<(HttpResponse, Option<S::Answer>), ApiError> {
        let keyed = Keyed::from_request(&self.req, self.key.client_scope(), body)?;
        if keyed.is_none() && seq.is_none() {
            // The hot path: one statement, one round trip.
            let client = self.pool.get().await?;
            return match statement.run(&client, &self.key).await? {
                Statement::Recorded {
                    reader_id, answer, ..
                } => {
                    self.last_seen.mark(reader_id);
                    let response = StoredResponse::new(S::STATUS, &answer)?.into_http(false);
                    Ok((response, Some(answer)))
                }
                Statement::UnknownReader => Err(reader_rejection(&self.pool, &self.key).await),
                Statement::Refused { reader_id, error } => {
                    self.last_seen.mark(reader_id);
                    Err(error)
                }
            };
        }
        let mut recorded = None;
        let guarded = seq::run_guarded(
            &self.pool,
            &self.key,
            keyed,
            seq,
            async |tx| match statement.run(tx, &self.key).await? {
                Statement::Recorded {
                    reader_id,
                    action_id,
                    answer,
                } => {
                    let response = StoredResponse::new(S::STATUS, &answer)?;
                    recorded = Some(answer);
                    Ok(Recorded {
                        response,
                        reader_id,
                        action_id: Some(action_id),
                    })
                }
                Statement::UnknownReader => Err(ApiError::unknown_reader()),
                Statement::Refused { error, .. } => Err(error),
            },
        )
        .await?;
        let (response, committed) = guarded.settle(&self.last_seen, &self.metrics);
        Ok((response, recorded.filter(|_| committed)))
    }
}
