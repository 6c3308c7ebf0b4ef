//! `GET /v1/audit`: the append-only audit log, newest first, in the caller's environment. A key or
//! token acts in one environment, so it reads only that environment's entries; entries of no
//! environment (users, sign-ins) are for owners, through the CLI or the dashboard.

use axum::extract::State as AxState;
use axum::Json;
use gatehouse_core::id::looks_like;

use super::dto::{AuditOut, ListOut, ListQuery};
use super::{ApiQuery, AuditRead, Caller, State};
use crate::error::ApiError;

/// Read the audit log.
#[utoipa::path(
    get, path = "/v1/audit", tag = "audit", security(("api_key" = [])),
    params(ListQuery),
    responses((status = 200, body = ListOut<AuditOut>), (status = 400, body = crate::error::ErrorOut))
)]
pub(crate) async fn list_audit(
    AxState(state): AxState<State>,
    caller: Caller<AuditRead>,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<Json<ListOut<AuditOut>>, ApiError> {
    let page = q.page()?;
    if let Some(after) = &page.starting_after {
        if !looks_like("aud", after) {
            return Err(ApiError::InvalidRequest("starting_after is not an audit entry id".into()));
        }
    }
    let result = state.store.list_audit(state.keys.workspace(), Some(caller.key.record.environment), &page).await?;
    Ok(Json(ListOut::from_page(&result, |r| r.id.as_str(), |a| AuditOut::from(a))))
}
